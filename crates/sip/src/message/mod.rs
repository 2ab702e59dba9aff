//! Helpers over `rsip` messages: tolerant parsing with RFC 3261 sanity checks, serialisation with a
//! correct `Content-Length`, header access by name (compact forms understood), building responses,
//! ACKs and CANCELs, Via manipulation and deterministic identifier generation.
//!
//! `rsip` 0.4 stores most headers as untyped strings; its typed accessors are strict and some of its
//! Display impls are not wire-correct (e.g. status lines print `480 TemporarilyUnavailable`).
//! These helpers therefore work on the header *strings* themselves and render messages without
//! relying on `rsip`'s status-line Display.
//!
//! Status codes: [`parse`] and [`response`] keep a well-known `rsip::StatusCode` variant (e.g.
//! `StatusCode::OK`) only when the reason phrase is the standard one; any other phrase is kept as
//! `StatusCode::Other(code, phrase)` so that it survives re-serialisation. Compare status codes with
//! `.code()`, never by variant.

//! # Layout
//! - `headers`: header access by name, building headers, tags, name-addr URIs, Via.
//! - `parse`: [`parse`] with its sanity checks, [`frame_stream`] for stream transports.
//! - `validate`: the RFC 4475 checks `parse` makes beyond rsip (Request-URI, single headers,
//!   Via, name-addr quotes).
//! - `compose`: status codes and reason phrases, [`to_bytes`], [`response`], [`ack_for_non2xx`],
//!   [`cancel_for`].
//! - [`IdGen`] lives in `crate::ids` and is re-exported here.

mod compose;
mod headers;
mod parse;
mod validate;

pub use crate::ids::IdGen;
pub use compose::{
    ack_for_non2xx, cancel_for, reason_phrase, response, standard_reason, status, to_bytes,
};
pub(crate) use headers::split_outside_quotes;
pub use headers::{
    add_received_rport, addr_uri, call_id, cseq, expand_compact, find_param, from_tag, header,
    header_name_value, headers_all, make_header, max_forwards, prepend_header, remove_header,
    replace_top_via, set_header, tag_of, to_tag, top_via, top_via_branch, uri_user, via_parts,
    ViaParts,
};
pub use parse::{frame_stream, parse, ParseError, StreamFrame};

#[cfg(test)]
mod tests;
