import os
import sys
import json
from collections import defaultdict


class Inventory:
    """A small store of items and their counts."""

    def __init__(self, name):
        self.name = name
        self.items = defaultdict(int)
        self.history = []

    def add(self, item, count=1):
        if count <= 0:
            raise ValueError("count must be positive")
        self.items[item] += count
        self.history.append(("add", item, count))
        return self.items[item]

    def remove(self, item, count=1):
        if count <= 0:
            raise ValueError("count must be positive")
        if self.items[item] < count:
            raise KeyError(item)
        self.items[item] -= count
        self.history.append(("remove", item, count))
        return self.items[item]

    def total(self):
        return sum(self.items.values())

    def to_json(self):
        return json.dumps({"name": self.name, "items": dict(self.items)})


def read_lines(path):
    with open(path) as f:
        return [line.rstrip("\n") for line in f]


def write_lines(path, lines):
    with open(path, "w") as f:
        for line in lines:
            f.write(line + "\n")


def count_words(lines):
    counts = defaultdict(int)
    for line in lines:
        for word in line.split():
            counts[word] += 1
    return counts


def top_words(counts, n=10):
    pairs = sorted(counts.items(), key=lambda pair: pair[1], reverse=True)
    return pairs[:n]


def fibonacci(n):
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b


def factorial(n):
    if n < 2:
        return 1
    result = 1
    for i in range(2, n + 1):
        result = result * i
    return result


def is_prime(n):
    if n < 2:
        return False
    for i in range(2, int(n ** 0.5) + 1):
        if n % i == 0:
            return False
    return True


def primes_below(n):
    return [i for i in range(2, n) if is_prime(i)]


def binary_search(items, target):
    low, high = 0, len(items) - 1
    while low <= high:
        mid = (low + high) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            low = mid + 1
        else:
            high = mid - 1
    return -1


def merge_sorted(left, right):
    result = []
    i, j = 0, 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            result.append(left[i])
            i += 1
        else:
            result.append(right[j])
            j += 1
    result.extend(left[i:])
    result.extend(right[j:])
    return result


def merge_sort(items):
    if len(items) < 2:
        return items
    mid = len(items) // 2
    return merge_sorted(merge_sort(items[:mid]), merge_sort(items[mid:]))


def main(args):
    if len(args) < 2:
        print("usage: inventory PATH")
        return 1
    lines = read_lines(args[1])
    counts = count_words(lines)
    for word, count in top_words(counts):
        print(word, count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
