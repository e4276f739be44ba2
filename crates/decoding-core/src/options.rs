//! The `key=value,key=value` text of a strategy's options: what each configuration's
//! `FromStr` reads and its `Display` writes (`k=8,init=ngram`).

/// The `key=value` pairs of `text`, split at commas, keys and values trimmed, empty pieces
/// skipped; a piece without `=` comes back as `Err(piece)`, for the caller to name.
///
/// ```
/// let pairs: Vec<_> = decoding_core::option_pairs(" k=8, init = pad:3,,").collect();
/// assert_eq!(pairs, [Ok(("k", "8")), Ok(("init", "pad:3"))]);
/// assert_eq!(decoding_core::option_pairs("k").next(), Some(Err("k")));
/// ```
pub fn option_pairs(text: &str) -> impl Iterator<Item = Result<(&str, &str), &str>> {
    text.split(',')
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            piece
                .split_once('=')
                .map(|(key, value)| (key.trim(), value.trim()))
                .ok_or(piece)
        })
}

/// Applies the options of `text` to `config` through `set`, the option named `first` (one
/// that picks a preset, such as `mode`) before the others whatever their order; a piece
/// without `=` goes to `unknown`. What each configuration's `FromStr` does before it
/// validates.
///
/// ```
/// let mut pairs = Vec::new();
/// decoding_core::apply_options(&mut pairs, "k=2,mode=x", Some("mode"), |p| p.to_string(), |v, k, x| {
///     v.push(format!("{k}:{x}"));
///     Ok(())
/// })
/// .unwrap();
/// assert_eq!(pairs, ["mode:x", "k:2"]);
/// ```
pub fn apply_options<C, E>(
    config: &mut C,
    text: &str,
    first: Option<&str>,
    unknown: impl Fn(&str) -> E,
    mut set: impl FnMut(&mut C, &str, &str) -> Result<(), E>,
) -> Result<(), E> {
    let mut pairs = option_pairs(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(&unknown)?;
    pairs.sort_by_key(|&(key, _)| Some(key) != first);
    for (key, value) in pairs {
        set(config, key, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_inner_separators() {
        let pairs: Vec<_> = option_pairs("cost=1:1/2:1.5,init=prompt:7,x==y").collect();
        assert_eq!(
            pairs,
            [
                Ok(("cost", "1:1/2:1.5")),
                Ok(("init", "prompt:7")),
                Ok(("x", "=y"))
            ]
        );
        assert_eq!(option_pairs("").count(), 0);
        assert_eq!(option_pairs(" , ").count(), 0);
    }
}
