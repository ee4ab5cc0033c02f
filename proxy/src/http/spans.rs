//! Where each field of a parsed head sits in its buffer, taken while httparse's borrow
//! lasts, so that the values can then share the head's bytes (`Bytes::slice`). Used by
//! the own HTTP/1.1 server (`serve::h1`) and client (`upstream::wire`).

/// A field's name and value, as byte ranges `(name start, name end, value start, value end)`.
pub type Span = (usize, usize, usize, usize);

/// Room for this many on the stack (most heads have a few fields; zeroing room for 100
/// there cost more than the rest of the parse), a Vec beyond.
const FEW: usize = 16;

pub struct Spans {
    few: [Span; FEW],
    many: Vec<Span>,
    count: usize,
}

impl Spans {
    /// The spans of `fields`, parsed from the buffer that starts at `base`.
    #[inline]
    pub fn of(base: *const u8, fields: &[httparse::Header<'_>]) -> Self {
        let count = fields.len();
        let mut s = Spans {
            few: [(0, 0, 0, 0); FEW],
            many: Vec::new(),
            count,
        };
        let slots = if count <= FEW {
            &mut s.few[..count]
        } else {
            s.many.resize(count, (0, 0, 0, 0));
            &mut s.many[..]
        };
        let base = base as usize;
        for (span, h) in slots.iter_mut().zip(fields) {
            let n = h.name.as_ptr() as usize - base;
            let v = h.value.as_ptr() as usize - base;
            *span = (n, n + h.name.len(), v, v + h.value.len());
        }
        s
    }

    pub fn as_slice(&self) -> &[Span] {
        if self.count <= FEW {
            &self.few[..self.count]
        } else {
            &self.many
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_each_name_and_value_on_the_stack_or_beyond() {
        for fields in [2, 40] {
            let mut head = String::from("GET / HTTP/1.1\r\n");
            for i in 0..fields {
                head.push_str(&format!("x-f{i}: v{i}\r\n"));
            }
            head.push_str("\r\n");
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut slots);
            req.parse(head.as_bytes()).expect("a head");
            let spans = Spans::of(head.as_ptr(), req.headers);
            assert_eq!(spans.as_slice().len(), fields);
            for (i, &(ns, ne, vs, ve)) in spans.as_slice().iter().enumerate() {
                assert_eq!(&head[ns..ne], format!("x-f{i}"));
                assert_eq!(&head[vs..ve], format!("v{i}"));
            }
        }
    }
}
