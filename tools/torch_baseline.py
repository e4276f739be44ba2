#!/usr/bin/env python3
"""PyTorch eager float32 baseline for the llama-cpu speed comparison (not run by CI).

A minimal LLaMA forward (the HF `LlamaForCausalLM` layout: RMSNorm, RoPE with rotate_half,
grouped-query attention, SwiGLU, tied or untied output projection) with a KV cache, in plain
eager PyTorch, float32, on the CPU. It decodes greedily and reports the time per generated
token, so that `cargo run --release --example eval -- --speed` can be compared with it on
the same prompt and token count.

    python3 tools/torch_baseline.py --model assets/pycoder-16m \
        --cases assets/eval/dev_eval.json --case 0 --tokens 128 --repeat 3
    python3 tools/torch_baseline.py --cost-curve   # forward of k tokens over a 512-token cache

Prints one JSON object per measurement on stdout: wall-clock times, and CPU times of the whole
process (all threads), which a shared machine distorts less.
"""

import argparse
import json
import time

import torch
from safetensors.torch import load_file


class Llama:
    def __init__(self, model_dir):
        with open(f"{model_dir}/config.json") as f:
            c = json.load(f)
        self.c = c
        w = {k: v.float() for k, v in load_file(f"{model_dir}/model.safetensors").items()}
        self.w = w
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads", self.heads)
        self.hd = c.get("head_dim") or c["hidden_size"] // self.heads
        self.eps = c["rms_norm_eps"]
        self.lm_head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        theta = c.get("rope_theta", 10000.0)
        inv = 1.0 / (theta ** (torch.arange(0, self.hd, 2).float() / self.hd))
        pos = torch.arange(c["max_position_embeddings"]).float()
        freqs = torch.outer(pos, inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()
        self.reset()

    def reset(self):
        self.k = [None] * self.layers
        self.v = [None] * self.layers

    def norm(self, x, weight):
        var = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(var + self.eps))

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    @torch.inference_mode()
    def forward(self, tokens):
        """Appends `tokens` (a chain) to the cache; returns the logits of the last one."""
        w = self.w
        n = len(tokens)
        past = 0 if self.k[0] is None else self.k[0].shape[1]
        x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
        cos = self.cos[past : past + n]
        sin = self.sin[past : past + n]
        mask = None
        if n > 1:
            mask = torch.full((n, past + n), float("-inf")).triu(past + 1)
        for i in range(self.layers):
            p = f"model.layers.{i}."
            h = self.norm(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(n, self.heads, self.hd).transpose(0, 1)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).view(n, self.kv_heads, self.hd).transpose(0, 1)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).view(n, self.kv_heads, self.hd).transpose(0, 1)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if self.k[i] is not None:
                k = torch.cat((self.k[i], k), dim=1)
                v = torch.cat((self.v[i], v), dim=1)
            self.k[i], self.v[i] = k, v
            rep = self.heads // self.kv_heads
            kk = k.repeat_interleave(rep, dim=0)
            vv = v.repeat_interleave(rep, dim=0)
            s = (q @ kk.transpose(1, 2)) * self.hd**-0.5
            if mask is not None:
                s = s + mask
            a = torch.softmax(s, dim=-1) @ vv
            a = a.transpose(0, 1).reshape(n, self.heads * self.hd)
            x = x + a @ w[p + "self_attn.o_proj.weight"].T
            h = self.norm(x, w[p + "post_attention_layernorm.weight"])
            g = h @ w[p + "mlp.gate_proj.weight"].T
            u = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
        h = self.norm(x[-1:], w["model.norm.weight"])
        return (h @ self.lm_head.T)[0]

    def truncate(self, length):
        for i in range(self.layers):
            self.k[i] = self.k[i][:, :length]
            self.v[i] = self.v[i][:, :length]


def decode(model, prompt, tokens):
    """Greedy decoding; returns (generated ids, prefill seconds, decode seconds, decode CPU
    seconds of the whole process)."""
    model.reset()
    t0 = time.perf_counter()
    out = [int(model.forward(prompt).argmax())]
    t1, c1 = time.perf_counter(), time.process_time()
    while len(out) < tokens:
        out.append(int(model.forward([out[-1]]).argmax()))
    t2, c2 = time.perf_counter(), time.process_time()
    return out, t1 - t0, t2 - t1, c2 - c1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="assets/pycoder-16m")
    ap.add_argument("--cases", default="assets/eval/dev_eval.json")
    ap.add_argument("--case", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--cost-curve", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = Llama(args.model)
    with open(args.cases) as f:
        case = json.load(f)["cases"][args.case]
    prompt = case["prompt_ids"]
    if args.cost_curve:
        base = (prompt * 4)[:512]
        times = {}
        for k in [1, 2, 4, 8, 16, 32, 64, 128]:
            model.reset()
            model.forward(base)
            best, runs = float("inf"), 0
            start, cpu_start = time.perf_counter(), time.process_time()
            while runs < 5 or time.perf_counter() - start < 1.0:
                t = time.perf_counter()
                model.forward(base[:k])
                best = min(best, time.perf_counter() - t)
                model.truncate(512)
                runs += 1
            times[k] = (best, (time.process_time() - cpu_start) / runs)
        for k, (t, cpu) in times.items():
            print(json.dumps({"k": k, "ms": round(t * 1e3, 3), "ratio": round(t / times[1][0], 3),
                              "cpu_ms": round(cpu * 1e3, 3),
                              "cpu_ratio": round(cpu / times[1][1], 3)}))
        return
    decode(model, prompt, 16)  # warm-up: first calls initialise MKL and the allocator
    for _ in range(args.repeat):
        out, prefill, dec, cpu = decode(model, prompt, args.tokens)
        print(json.dumps({
            "engine": "torch-eager-f32",
            "threads": torch.get_num_threads(),
            "case": case["id"],
            "prompt_tokens": len(prompt),
            "generated": len(out),
            "prefill_ms": round(prefill * 1e3, 2),
            "decode_ms_per_token": round(dec * 1e3 / max(len(out) - 1, 1), 3),
            "decode_cpu_ms_per_token": round(cpu * 1e3 / max(len(out) - 1, 1), 3),
            "first_tokens": out[:8],
        }))


if __name__ == "__main__":
    main()
