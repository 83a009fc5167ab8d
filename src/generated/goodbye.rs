// Automatically generated rust module for 'goodbye.proto' file

#![allow(non_snake_case)]
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(unused_imports)]
#![allow(unknown_lints)]
#![allow(clippy::all)]
#![cfg_attr(rustfmt, rustfmt_skip)]


use quick_protobuf::{MessageInfo, MessageRead, MessageWrite, BytesReader, Writer, WriterBackend, Result};
use quick_protobuf::sizeofs::*;
use super::*;

#[allow(clippy::derive_partial_eq_without_eq)]
#[derive(Debug, Default, PartialEq, Clone)]
pub struct Goodbye {
    pub reason: Option<u32>,
    pub retry_after_ms: Option<u64>,
}

impl<'a> MessageRead<'a> for Goodbye {
    fn from_reader(r: &mut BytesReader, bytes: &'a [u8]) -> Result<Self> {
        let mut msg = Self::default();
        while !r.is_eof() {
            match r.next_tag(bytes) {
                Ok(8) => msg.reason = Some(r.read_uint32(bytes)?),
                Ok(16) => msg.retry_after_ms = Some(r.read_uint64(bytes)?),
                Ok(t) => { r.read_unknown(bytes, t)?; }
                Err(e) => return Err(e),
            }
        }
        Ok(msg)
    }
}

impl MessageWrite for Goodbye {
    fn get_size(&self) -> usize {
        0
        + self.reason.as_ref().map_or(0, |m| 1 + sizeof_varint(*(m) as u64))
        + self.retry_after_ms.as_ref().map_or(0, |m| 1 + sizeof_varint(*(m) as u64))
    }

    fn write_message<W: WriterBackend>(&self, w: &mut Writer<W>) -> Result<()> {
        if let Some(ref s) = self.reason { w.write_with_tag(8, |w| w.write_uint32(*s))?; }
        if let Some(ref s) = self.retry_after_ms { w.write_with_tag(16, |w| w.write_uint64(*s))?; }
        Ok(())
    }
}

