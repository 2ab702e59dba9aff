//! SIP over TCP framing: `bibridge_sip::message::frame_stream` over an arbitrary byte stream,
//! fed in chunks as a connection would deliver it, each framed message handed to `parse`.
//! Invariants: a framed message or skip is never longer than the buffer (the transport slices
//! with it), a message never exceeds the limit, and a buffer that frames as `Incomplete` below
//! the limit makes progress once more bytes arrive.
#![no_main]

use bibridge_sip::message::{self, StreamFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // First byte: message size limit; second: chunk size of the arriving stream.
    let max_message = 64 + usize::from(data[0]) * 256;
    let chunk = 1 + usize::from(data[1]);
    let stream = &data[2..];
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        if fed < stream.len() {
            let end = (fed + chunk).min(stream.len());
            buf.extend_from_slice(&stream[fed..end]);
            fed = end;
        } else if buf.is_empty() {
            break;
        }
        // Drain everything complete in the buffer, as the transport does.
        let mut closed = false;
        loop {
            match message::frame_stream(&buf, max_message) {
                StreamFrame::Message(n) => {
                    assert!(
                        n > 0 && n <= buf.len(),
                        "Message({n}) for a buffer of {}",
                        buf.len()
                    );
                    assert!(
                        n <= max_message,
                        "Message({n}) over the limit {max_message}"
                    );
                    let _ = message::parse(&buf[..n]);
                    buf.drain(..n);
                }
                StreamFrame::Skip { len, .. } => {
                    assert!(
                        len > 0 && len <= buf.len(),
                        "Skip({len}) for a buffer of {}",
                        buf.len()
                    );
                    buf.drain(..len);
                }
                StreamFrame::Incomplete => break,
                StreamFrame::Invalid => {
                    closed = true;
                    break;
                }
            }
        }
        if closed || fed >= stream.len() {
            break;
        }
    }
});
