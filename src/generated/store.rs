// Automatically generated rust module for 'store.proto' file

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
pub struct StoredPeer {
    pub wanted: Option<bool>,
    pub addrs: Vec<Vec<u8>>,
    pub protected: Vec<String>,
    pub tag_names: Vec<String>,
    pub tag_values: Vec<i64>,
    pub last_reason: Option<u32>,
    pub last_closed_by_remote: Option<bool>,
    pub last_at_ms: Option<i64>,
    pub last_retry_after_ms: Option<u64>,
}

impl<'a> MessageRead<'a> for StoredPeer {
    fn from_reader(r: &mut BytesReader, bytes: &'a [u8]) -> Result<Self> {
        let mut msg = Self::default();
        while !r.is_eof() {
            match r.next_tag(bytes) {
                Ok(8) => msg.wanted = Some(r.read_bool(bytes)?),
                Ok(18) => msg.addrs.push(r.read_bytes(bytes)?.to_owned()),
                Ok(26) => msg.protected.push(r.read_string(bytes)?.to_owned()),
                Ok(34) => msg.tag_names.push(r.read_string(bytes)?.to_owned()),
                Ok(40) => msg.tag_values.push(r.read_sint64(bytes)?),
                Ok(48) => msg.last_reason = Some(r.read_uint32(bytes)?),
                Ok(56) => msg.last_closed_by_remote = Some(r.read_bool(bytes)?),
                Ok(64) => msg.last_at_ms = Some(r.read_int64(bytes)?),
                Ok(72) => msg.last_retry_after_ms = Some(r.read_uint64(bytes)?),
                Ok(t) => { r.read_unknown(bytes, t)?; }
                Err(e) => return Err(e),
            }
        }
        Ok(msg)
    }
}

impl MessageWrite for StoredPeer {
    fn get_size(&self) -> usize {
        0
        + self.wanted.as_ref().map_or(0, |m| 1 + sizeof_varint(*(m) as u64))
        + self.addrs.iter().map(|s| 1 + sizeof_len((s).len())).sum::<usize>()
        + self.protected.iter().map(|s| 1 + sizeof_len((s).len())).sum::<usize>()
        + self.tag_names.iter().map(|s| 1 + sizeof_len((s).len())).sum::<usize>()
        + self.tag_values.iter().map(|s| 1 + sizeof_sint64(*(s))).sum::<usize>()
        + self.last_reason.as_ref().map_or(0, |m| 1 + sizeof_varint(*(m) as u64))
        + self.last_closed_by_remote.as_ref().map_or(0, |m| 1 + sizeof_varint(*(m) as u64))
        + self.last_at_ms.as_ref().map_or(0, |m| 1 + sizeof_varint(*(m) as u64))
        + self.last_retry_after_ms.as_ref().map_or(0, |m| 1 + sizeof_varint(*(m) as u64))
    }

    fn write_message<W: WriterBackend>(&self, w: &mut Writer<W>) -> Result<()> {
        if let Some(ref s) = self.wanted { w.write_with_tag(8, |w| w.write_bool(*s))?; }
        for s in &self.addrs { w.write_with_tag(18, |w| w.write_bytes(&**s))?; }
        for s in &self.protected { w.write_with_tag(26, |w| w.write_string(&**s))?; }
        for s in &self.tag_names { w.write_with_tag(34, |w| w.write_string(&**s))?; }
        for s in &self.tag_values { w.write_with_tag(40, |w| w.write_sint64(*s))?; }
        if let Some(ref s) = self.last_reason { w.write_with_tag(48, |w| w.write_uint32(*s))?; }
        if let Some(ref s) = self.last_closed_by_remote { w.write_with_tag(56, |w| w.write_bool(*s))?; }
        if let Some(ref s) = self.last_at_ms { w.write_with_tag(64, |w| w.write_int64(*s))?; }
        if let Some(ref s) = self.last_retry_after_ms { w.write_with_tag(72, |w| w.write_uint64(*s))?; }
        Ok(())
    }
}

#[allow(clippy::derive_partial_eq_without_eq)]
#[derive(Debug, Default, PartialEq, Clone)]
pub struct StoredBan {
    pub until_ms: Option<i64>,
}

impl<'a> MessageRead<'a> for StoredBan {
    fn from_reader(r: &mut BytesReader, bytes: &'a [u8]) -> Result<Self> {
        let mut msg = Self::default();
        while !r.is_eof() {
            match r.next_tag(bytes) {
                Ok(8) => msg.until_ms = Some(r.read_int64(bytes)?),
                Ok(t) => { r.read_unknown(bytes, t)?; }
                Err(e) => return Err(e),
            }
        }
        Ok(msg)
    }
}

impl MessageWrite for StoredBan {
    fn get_size(&self) -> usize {
        0
        + self.until_ms.as_ref().map_or(0, |m| 1 + sizeof_varint(*(m) as u64))
    }

    fn write_message<W: WriterBackend>(&self, w: &mut Writer<W>) -> Result<()> {
        if let Some(ref s) = self.until_ms { w.write_with_tag(8, |w| w.write_int64(*s))?; }
        Ok(())
    }
}

