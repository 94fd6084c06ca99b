//! The tags a core passes with `ProcessRawLogV2` / `ProcessLog`, in iLogtail's encoding.

use bytes::Bytes;

/// iLogtail's tag encoding: `k1~=~v1^^^k2~=~v2`; a part without `~=~` becomes
/// `__prefix__N` (N counts every part).
pub fn parse(raw: &[u8]) -> Vec<(Bytes, Bytes)> {
    let mut tags = Vec::new();
    let mut index = 0;
    let mut rest = raw;
    while !rest.is_empty() {
        let (part, next) = match find(rest, b"^^^") {
            Some(i) => (&rest[..i], &rest[i + 3..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        if part.is_empty() {
            continue;
        }
        match find(part, b"~=~") {
            Some(i) if i > 0 => tags.push((
                Bytes::copy_from_slice(&part[..i]),
                Bytes::copy_from_slice(&part[i + 3..]),
            )),
            _ => tags.push((
                Bytes::from(format!("__prefix__{index}")),
                Bytes::copy_from_slice(part),
            )),
        }
        index += 1;
    }
    tags
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_unnamed_parts() {
        let tags = parse(b"k1~=~v1^^^lonely^^^^^^k2~=~");
        let as_str: Vec<(String, String)> = tags
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into(),
                    String::from_utf8_lossy(v).into(),
                )
            })
            .collect();
        assert_eq!(
            as_str,
            vec![
                ("k1".into(), "v1".into()),
                ("__prefix__1".into(), "lonely".into()),
                ("k2".into(), "".into()),
            ]
        );
        assert!(parse(b"").is_empty());
    }
}
