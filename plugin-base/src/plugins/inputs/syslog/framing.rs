//! Cutting a TCP stream into syslog messages (RFC 6587): octet counting (`LEN SP MSG`, what
//! rsyslog and syslog-ng send with `framing octet-counted`) and newline-ended messages (the
//! traditional framing, the only one iLogtail reads). Each message picks its framing by its
//! first byte, a digit meaning octet counting when the length is followed by a message's
//! `<PRI>`, so one connection may mix them as rsyslog allows. Memory is bounded by
//! `MaxMessageSize`: a longer message is cut there, the rest of it skipped, and counted.

/// What one call to [`Deframer::next_frame`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message, without its framing.
    Message(Vec<u8>),
    /// The first `MaxMessageSize` bytes of a longer message; the rest is skipped.
    Truncated(Vec<u8>),
}

/// The bytes of one connection not yet cut into messages.
pub struct Deframer {
    /// Bytes read; those before `pos` are already cut into messages. They are dropped at the
    /// next `extend`, so that cutting many short messages from one read moves no bytes.
    buf: Vec<u8>,
    pos: usize,
    max: usize,
    /// Bytes of an over-long message still to be skipped: `Some(n)` for an octet-counted one
    /// (n bytes left), `Some(usize::MAX)` for a newline-ended one (up to its newline).
    skipping: Option<usize>,
}

impl Deframer {
    pub fn new(max_message_size: usize) -> Deframer {
        Deframer {
            buf: Vec::new(),
            pos: 0,
            max: max_message_size.max(1),
            skipping: None,
        }
    }

    /// Adds bytes read from the connection.
    pub fn extend(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// How many bytes are held that are not yet a whole message.
    pub fn held(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next message, when the bytes held have one. Call until None after each `extend`.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.skip();
        if self.skipping.is_some() {
            return None;
        }
        let first = *self.pending().first()?;
        if first.is_ascii_digit() {
            if let Some(frame) = self.octet_counted() {
                return frame;
            }
        }
        self.newline_ended()
    }

    /// What is held when the connection closes: a last message without its newline.
    pub fn finish(&mut self) -> Option<Frame> {
        let message = (self.skipping.is_none() && self.held() > 0).then(|| self.pending().to_vec());
        self.buf.clear();
        self.pos = 0;
        message.map(Frame::Message)
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Marks the next `n` bytes as cut.
    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    fn skip(&mut self) {
        match self.skipping {
            Some(usize::MAX) => match memchr::memchr(b'\n', self.pending()) {
                Some(i) => {
                    self.consume(i + 1);
                    self.skipping = None;
                }
                None => self.consume(self.held()),
            },
            Some(left) => {
                let n = left.min(self.held());
                self.consume(n);
                self.skipping = (left > n).then_some(left - n);
            }
            None => {}
        }
    }

    /// `LEN SP MSG`. Outer None: not octet counting after all (digits not followed by a
    /// space, as a newline-ended message may start); inner None: wait for more bytes.
    fn octet_counted(&mut self) -> Option<Option<Frame>> {
        let pending = self.pending();
        let digits = pending.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == pending.len() {
            // All digits so far: wait, unless it is already too long to be a length.
            return (digits <= 10).then_some(None);
        }
        if pending[digits] != b' ' || digits > 10 {
            return None;
        }
        let len: usize = std::str::from_utf8(&pending[..digits]).ok()?.parse().ok()?;
        let start = digits + 1;
        // A syslog message starts with its `<PRI>`: "2024 was a year" is a line, not a length.
        match pending.get(start) {
            None if len > 0 => return Some(None),
            Some(b) if *b != b'<' => return None,
            _ => {}
        }
        if len > self.max {
            let have = (pending.len() - start).min(self.max);
            if have < self.max {
                return Some(None);
            }
            let message = pending[start..start + self.max].to_vec();
            let taken = (start + len).min(pending.len());
            self.consume(taken);
            let left = start + len - taken;
            self.skipping = (left > 0).then_some(left);
            return Some(Some(Frame::Truncated(message)));
        }
        if pending.len() < start + len {
            return Some(None);
        }
        let message = pending[start..start + len].to_vec();
        self.consume(start + len);
        Some(Some(Frame::Message(message)))
    }

    fn newline_ended(&mut self) -> Option<Frame> {
        let pending = self.pending();
        match memchr::memchr(b'\n', pending) {
            Some(i) if i <= self.max => {
                let mut message = &pending[..i];
                if message.last() == Some(&b'\r') {
                    message = &message[..i - 1];
                }
                let message = message.to_vec();
                self.consume(i + 1);
                Some(Frame::Message(message))
            }
            found => {
                if found.is_none() && pending.len() <= self.max {
                    return None;
                }
                let message = pending[..self.max].to_vec();
                match found {
                    Some(i) => self.consume(i + 1),
                    None => {
                        self.consume(self.held());
                        self.skipping = Some(usize::MAX);
                    }
                }
                Some(Frame::Truncated(message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut Deframer) -> Vec<Frame> {
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    fn msg(s: &str) -> Frame {
        Frame::Message(s.as_bytes().to_vec())
    }

    #[test]
    fn newline_and_octet_counted_messages_mixed_and_split_anywhere() {
        let stream = b"<1>a b\n10 <2>c\nd e f6 <3>g h<4>x\r\n";
        // Fed whole, and one byte at a time: the same messages.
        let mut d = Deframer::new(1024);
        d.extend(stream);
        let whole = all(&mut d);
        assert_eq!(
            whole,
            [
                msg("<1>a b"),
                msg("<2>c\nd e f"),
                msg("<3>g h"),
                msg("<4>x")
            ]
        );
        let mut d = Deframer::new(1024);
        let mut bytewise = Vec::new();
        for b in stream {
            d.extend(&[*b]);
            bytewise.extend(all(&mut d));
        }
        assert_eq!(bytewise, whole);
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn a_message_starting_with_digits_but_no_length_is_newline_ended() {
        let mut d = Deframer::new(1024);
        d.extend(b"2024-01-01 plain line\n");
        assert_eq!(all(&mut d), [msg("2024-01-01 plain line")]);
        // Digits and a space, but no <PRI> after them: a line too, even split there.
        d.extend(b"2024 ");
        assert_eq!(d.next_frame(), None);
        d.extend(b"was a year\n4 <1>x");
        assert_eq!(all(&mut d), [msg("2024 was a year"), msg("<1>x")]);
        d.extend(b"last without newline");
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.finish(), Some(msg("last without newline")));
    }

    #[test]
    fn long_messages_are_cut_at_the_maximum_and_the_rest_skipped() {
        let mut d = Deframer::new(4);
        d.extend(b"abcdefgh");
        assert_eq!(d.next_frame(), Some(Frame::Truncated(b"abcd".to_vec())));
        d.extend(b"ij\nok\n");
        assert_eq!(all(&mut d), [msg("ok")]);
        d.extend(b"10 <123");
        assert_eq!(d.next_frame(), Some(Frame::Truncated(b"<123".to_vec())));
        d.extend(b"456789");
        d.extend(b"3 <hi");
        assert_eq!(all(&mut d), [msg("<hi")]);
    }
}
