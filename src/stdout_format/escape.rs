//! JSON string escaping of raw bytes, the hot loop of every stdout and file flusher.
//!
//! The output is the one the format has always had (DESIGN §7 makes it a contract): `"` and `\`
//! are backslashed, `\n`, `\r` and `\t` get their short escapes, every other control character
//! (below 0x20) is `\u00xx` in lower-case hex, everything else, DEL and non-ASCII included, is
//! copied as is. Invalid UTF-8 sequences become U+FFFD, so a line is valid JSON whatever the
//! input.
//!
//! Why it is fast: every byte that needs an escape is ASCII, and no byte of a multi-byte
//! UTF-8 character is ASCII, so valid UTF-8 can be escaped byte-wise. Eight bytes at a time are
//! tested with word arithmetic for "needs an escape, or is not ASCII", which also gives the
//! position of the first such byte; the clean runs between escapes are copied whole, and a
//! 256-entry table says what each byte needs. ASCII text (most logs) is never validated
//! separately: at the first non-ASCII byte the rest is validated once (the standard library's
//! vectorised validator) and escaped the same way, or, when invalid, chunk by chunk.

/// What each byte needs: 0 nothing, `b'u'` a `\u00xx` escape, else the letter after the
/// backslash (`"`, `\`, `n`, `r`, `t`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that is a control character, `"` or `\\`, exact for the
/// lowest such byte (a borrow only runs upwards from a byte that is itself flagged): the classic
/// "has a zero byte" / "has a byte less than n" tests.
#[inline(always)]
fn special_bytes(word: u64) -> u64 {
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let q = word ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = word ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGHS
}

/// Whether any of the eight bytes of `word` needs an escape.
#[cfg(test)]
fn word_needs_escape(word: u64) -> bool {
    special_bytes(word) != 0
}

/// Appends `bytes`, escaped for the inside of a JSON string, to `out`.
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 8);
    let Some(at) = escape_run::<true>(out, bytes) else {
        return;
    };
    // Everything before `at` was ASCII: the rest starts on a character boundary.
    let rest = &bytes[at..];
    if std::str::from_utf8(rest).is_ok() {
        escape_run::<false>(out, rest);
        return;
    }
    for chunk in rest.utf8_chunks() {
        escape_run::<false>(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// Escapes `s` (valid UTF-8 unless `STOP_AT_NON_ASCII`). With `STOP_AT_NON_ASCII`, stops at the
/// first non-ASCII byte and returns its position (everything before it is written).
#[inline(always)]
fn escape_run<const STOP_AT_NON_ASCII: bool>(out: &mut Vec<u8>, s: &[u8]) -> Option<usize> {
    let non_ascii = if STOP_AT_NON_ASCII { HIGHS } else { 0 };
    let mut start = 0;
    let mut i = 0;
    loop {
        // The next byte at or after `i` that needs an escape (or is not ASCII).
        let found = loop {
            if let Some(&word) = s.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
                let word = u64::from_le_bytes(word);
                let flagged = special_bytes(word) | (word & non_ascii);
                if flagged == 0 {
                    i += 8;
                    continue;
                }
                break Some(i + (flagged.trailing_zeros() / 8) as usize);
            }
            break s
                .get(i..)
                .unwrap_or_default()
                .iter()
                .position(|&b| ESCAPE[usize::from(b)] != 0 || (STOP_AT_NON_ASCII && b >= 0x80))
                .map(|p| i + p);
        };
        let Some(at) = found else {
            out.extend_from_slice(&s[start..]);
            return None;
        };
        out.extend_from_slice(&s[start..at]);
        let b = s[at];
        if STOP_AT_NON_ASCII && b >= 0x80 {
            return Some(at);
        }
        match ESCAPE[usize::from(b)] {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            what => out.extend_from_slice(&[b'\\', what]),
        }
        i = at + 1;
        start = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        escape_into(&mut out, bytes);
        out
    }

    /// The escaper as it was before the table-driven one: the reference for "same bytes".
    fn reference(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::new();
        for chunk in bytes.utf8_chunks() {
            for &b in chunk.valid().as_bytes() {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0..=0x1f => {
                        let _ = write!(out, "\\u{b:04x}");
                    }
                    _ => out.push(b),
                }
            }
            if !chunk.invalid().is_empty() {
                out.extend_from_slice("\u{fffd}".as_bytes());
            }
        }
        out
    }

    /// serde_json's escaping of a string, without the quotes.
    fn serde(s: &str) -> Vec<u8> {
        let quoted = serde_json::to_vec(s).unwrap();
        quoted[1..quoted.len() - 1].to_vec()
    }

    #[test]
    fn every_control_character() {
        for b in 0u8..0x20 {
            let out = escaped(&[b]);
            let expected: &[u8] = match b {
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                _ => &[],
            };
            if expected.is_empty() {
                assert_eq!(out, format!("\\u{b:04x}").into_bytes(), "byte {b:#x}");
            } else {
                assert_eq!(out, expected, "byte {b:#x}");
            }
            // serde_json writes \b and \f where the format has \u0008 and \u000c; every other
            // control character is escaped byte for byte the same way.
            if b != 0x08 && b != 0x0c {
                assert_eq!(out, serde(&char::from(b).to_string()), "byte {b:#x}");
            }
            // Whatever the spelling, it reads back as the same string.
            let line = [b"\"".as_slice(), &out, b"\""].concat();
            let back: String = serde_json::from_slice(&line).unwrap();
            assert_eq!(back.as_bytes(), [b], "byte {b:#x}");
        }
        // DEL is not a JSON control character: copied as is.
        assert_eq!(escaped(b"\x7f"), b"\x7f");
    }

    #[test]
    fn quotes_and_backslashes() {
        assert_eq!(escaped(br#"say "hi" \o/"#), br#"say \"hi\" \\o/"#);
        assert_eq!(escaped(br#"""\\"#), br#"\"\"\\\\"#);
        assert_eq!(escaped(br#"a "b" \c"#), serde(r#"a "b" \c"#));
    }

    #[test]
    fn multi_byte_utf8_is_copied() {
        let s = "héllo wörld — 日本語 🎉 \"quoted\" ends with 🎉";
        assert_eq!(escaped(s.as_bytes()), serde(s));
        // Characters straddling the eight-byte words.
        for pad in 0..9 {
            let s = format!("{}日本\t🎉{}\\", "x".repeat(pad), "y".repeat(pad));
            assert_eq!(escaped(s.as_bytes()), serde(&s), "pad {pad}");
        }
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let cases: &[&[u8]] = &[
            b"a\xffb",
            b"\xff",
            b"\xc3",           // truncated two-byte sequence at the end
            b"\xe6\x97x\"",    // truncated three-byte sequence, then an escape
            b"\xed\xa0\x80",   // a surrogate
            b"12345678\x80\n", // a stray continuation byte after a clean word
            b"\xf0\x9f\x8e\x89\xff\xfe\t",
        ];
        for case in cases {
            let out = escaped(case);
            assert_eq!(out, reference(case), "{case:?}");
            let lossy = String::from_utf8_lossy(case);
            assert_eq!(out, serde(&lossy), "{case:?}");
        }
    }

    #[test]
    fn same_bytes_as_the_previous_escaper_on_every_position() {
        // Each interesting byte at every offset of the first words, among clean text.
        let specials: &[&[u8]] = &[
            b"\"",
            b"\\",
            b"\n",
            b"\x00",
            b"\x1f",
            b"\x7f",
            b" ",
            b"\xc3\xa9",
            b"\xff",
        ];
        for special in specials {
            for offset in 0..20 {
                let mut input = b"abcdefghijklmnopqrstuvwxyz".to_vec();
                input.splice(offset..offset, special.iter().copied());
                assert_eq!(
                    escaped(&input),
                    reference(&input),
                    "{special:?} at {offset}"
                );
            }
        }
        // A deterministic pseudo-random soup of bytes, mostly valid.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (state % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let pick = [b'a', b'"', b'\\', b'\n', 0x01, 0xc3, 0xa9, 0xff, b'Z', 0x7f];
                    pick[(state % pick.len() as u64) as usize]
                })
                .collect();
            assert_eq!(escaped(&input), reference(&input), "{input:?}");
        }
    }

    #[test]
    fn word_test_has_no_false_positives_or_negatives() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut word = [b'a'; 8];
                word[pos] = b;
                let needs = word_needs_escape(u64::from_le_bytes(word));
                assert_eq!(needs, ESCAPE[usize::from(b)] != 0, "byte {b:#x} at {pos}");
            }
        }
        // The lowest flagged byte is exact even when others follow (borrows run upwards).
        for low in 0..8 {
            for b in [0x00u8, 0x1f, b'"', b'\\', b'\n'] {
                let mut word = [b'a'; 8];
                word[low] = b;
                for w in word.iter_mut().skip(low + 1) {
                    *w = 0x01;
                }
                let flagged = special_bytes(u64::from_le_bytes(word));
                assert_eq!(flagged.trailing_zeros() / 8, low as u32, "{b:#x} at {low}");
            }
        }
        // Bytes around the thresholds next to each other (borrows between bytes).
        let word = u64::from_le_bytes([0x20, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xff, 0x7f]);
        assert!(!word_needs_escape(word));
    }
}

#[cfg(test)]
mod speed {
    //! `cargo test --release -p tailrace --lib escape_speed -- --ignored --nocapture`: the
    //! escaper against the previous one on access-log lines (a measurement, not a check).
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn escape_speed() {
        let lines: Vec<Vec<u8>> = (0..20_000)
            .map(|i| {
                format!(
                    "10.{}.0.{} - - [24/Nov/2026:10:{:02}:00 +0000] \"GET /api/v1/items?id={i} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" seq={i}",
                    i % 250, i % 200, i % 60, 1000 + i % 9000
                )
                .into_bytes()
            })
            .collect();
        let bytes: usize = lines.iter().map(Vec::len).sum::<usize>() * 50;
        let mut out = Vec::with_capacity(64 << 20);
        let mut time = |f: &dyn Fn(&mut Vec<u8>, &[u8])| {
            let started = Instant::now();
            for _ in 0..50 {
                out.clear();
                for line in &lines {
                    f(&mut out, line);
                }
            }
            bytes as f64 / started.elapsed().as_secs_f64() / 1e6
        };
        let old = time(&|out, line| reference_into(out, line));
        let new = time(&|out, line| escape_into(out, line));
        println!(
            "escape: previous {old:.0} MB/s, now {new:.0} MB/s: {:.1}x",
            new / old
        );
    }

    /// The previous escaper exactly as it was (appending to `out`).
    fn reference_into(out: &mut Vec<u8>, bytes: &[u8]) {
        use std::io::Write;
        for chunk in bytes.utf8_chunks() {
            let valid = chunk.valid().as_bytes();
            let mut start = 0;
            for (i, &b) in valid.iter().enumerate() {
                let escape: &[u8] = match b {
                    b'"' => b"\\\"",
                    b'\\' => b"\\\\",
                    b'\n' => b"\\n",
                    b'\r' => b"\\r",
                    b'\t' => b"\\t",
                    0..=0x1f => {
                        out.extend_from_slice(&valid[start..i]);
                        let _ = write!(out, "\\u{b:04x}");
                        start = i + 1;
                        continue;
                    }
                    _ => continue,
                };
                out.extend_from_slice(&valid[start..i]);
                out.extend_from_slice(escape);
                start = i + 1;
            }
            out.extend_from_slice(&valid[start..]);
            if !chunk.invalid().is_empty() {
                out.extend_from_slice("\u{fffd}".as_bytes());
            }
        }
    }
}
