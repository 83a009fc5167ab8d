//! The peer-exchange wire format: the peers a node is connected to, with addresses.
//!
//! One frame per stream on [`PEERS_PROTOCOL`]: an unsigned-varint length prefix and a protobuf
//! `PeerList` (`src/generated/peers.proto`), at most [`MAX_PEERS_FRAME`] bytes, checked before
//! the body is read. A sender keeps to [`MAX_PEERS`] entries, [`MAX_ADDRS_PER_PEER`] addresses
//! per entry and the frame budget ([`encode_peers`] cuts a list to them). A receiver keeps what
//! parses and fits and drops the rest without holding it against the sender, which may run
//! another version: entries past the cap, addresses past the cap or of protocols it does not
//! know, peer ids it cannot read, a frame over the budget (refused before it is read). Only a
//! broken protobuf encoding is a protocol violation.

use std::io;

use asynchronous_codec::{FramedRead, FramedWrite};
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, SinkExt, StreamExt};
use libp2p_core::Multiaddr;
use libp2p_identity::PeerId;
use libp2p_swarm::StreamProtocol;

use crate::generated::peers as proto;

/// The protocol name of peer exchange.
pub const PEERS_PROTOCOL: StreamProtocol = StreamProtocol::new("/connection-manager/peers/1.0.0");

/// Largest peer-list frame accepted, in bytes (without the length prefix).
pub const MAX_PEERS_FRAME: usize = 16 * 1024;

/// Most peers in one list.
pub const MAX_PEERS: usize = 64;

/// Most addresses per peer in one list.
pub const MAX_ADDRS_PER_PEER: usize = 4;

pub use crate::core::PeerList;

// The wire carries at least what the policy sends and reads.
const _: () = assert!(
    MAX_PEERS >= crate::core::MAX_LIST_PEERS
        && MAX_ADDRS_PER_PEER >= crate::core::MAX_LIST_ADDRESSES
);

/// What can go wrong with a peer list.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The stream failed.
    #[error("I/O error on the peer-exchange stream: {0}")]
    Io(#[from] io::Error),
    /// The frame was too large, its prefix invalid, or its protobuf malformed.
    #[error("invalid peer-list frame: {0}")]
    Frame(#[from] quick_protobuf_codec::Error),
    /// The stream ended before a frame.
    #[error("the peer-exchange stream ended before a peer list")]
    Empty,
    /// The frame is larger than [`MAX_PEERS_FRAME`]; it was refused before it was read.
    #[error("peer-list frame of {len} bytes exceeds the cap of {max}")]
    Oversized {
        /// The length the frame announced.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The protobuf encoding is broken (a field running past its message, a bad key).
    #[error("peer list with a broken protobuf encoding")]
    BrokenEncoding,
}

impl ExchangeError {
    /// Whether the remote broke the protocol (as opposed to the stream failing or ending, or a
    /// frame too large for this version, which an honest sender of another version may send).
    pub fn is_violation(&self) -> bool {
        !matches!(self, Self::Io(_) | Self::Empty | Self::Oversized { .. })
    }
}

/// The bytes `peer` with `addrs` adds to a peer-list message (its entry, with key and
/// length).
pub fn entry_len(peer: &PeerId, addrs: &[Multiaddr]) -> usize {
    fn field(len: usize) -> usize {
        1 + unsigned_varint::encode::usize(len, &mut unsigned_varint::encode::usize_buffer()).len()
            + len
    }
    let body = field(peer.to_bytes().len()) + addrs.iter().map(|a| field(a.len())).sum::<usize>();
    field(body)
}

/// The protobuf message for `peers`, cut to the caps and to [`MAX_PEERS_FRAME`] bytes: the
/// first [`MAX_ADDRS_PER_PEER`] addresses of each entry, and the entries that fit, in order
/// (an entry too large for the room left is skipped).
pub fn encode_peers(peers: &PeerList) -> proto::PeerList {
    let mut room = MAX_PEERS_FRAME;
    proto::PeerList {
        peers: peers
            .iter()
            .take(MAX_PEERS)
            .filter_map(|(peer, addrs)| {
                let addrs = &addrs[..addrs.len().min(MAX_ADDRS_PER_PEER)];
                let len = entry_len(peer, addrs);
                room = room.checked_sub(len)?;
                Some(proto::Peer {
                    id: Some(peer.to_bytes()),
                    addrs: addrs.iter().map(|a| a.to_vec()).collect(),
                })
            })
            .collect(),
    }
}

/// The peers in a received message: the first [`MAX_PEERS`] entries with a readable peer id,
/// each with its first [`MAX_ADDRS_PER_PEER`] addresses that parse. What does not parse or fit
/// is dropped (see the [module docs](self)).
pub fn decode_peers(message: proto::PeerList) -> PeerList {
    message
        .peers
        .into_iter()
        .filter_map(|entry| {
            let peer = PeerId::from_bytes(entry.id.as_deref()?).ok()?;
            let addrs = entry
                .addrs
                .into_iter()
                .filter_map(|bytes| Multiaddr::try_from(bytes).ok())
                .take(MAX_ADDRS_PER_PEER)
                .collect();
            Some((peer, addrs))
        })
        .take(MAX_PEERS)
        .collect()
}

/// Decodes one length-prefixed peer-list frame from `frame` (the same rules as
/// [`recv_peers`]; for tests and fuzzing). An incomplete frame is [`ExchangeError::Empty`].
pub fn decode_peers_frame(frame: &[u8]) -> Result<PeerList, ExchangeError> {
    use asynchronous_codec::Decoder;
    let mut buf = bytes::BytesMut::from(frame);
    let message = PeersCodec.decode(&mut buf)?.ok_or(ExchangeError::Empty)?;
    Ok(decode_peers(message))
}

fn codec() -> quick_protobuf_codec::Codec<proto::PeerList> {
    quick_protobuf_codec::Codec::new(MAX_PEERS_FRAME)
}

/// The frame codec, with the protobuf structure checked before quick-protobuf reads it:
/// quick-protobuf 0.8 can panic on a nested message whose fields run past its end (found by
/// fuzzing), so malformed input must never reach it.
#[derive(Default)]
struct PeersCodec;

impl asynchronous_codec::Decoder for PeersCodec {
    type Item = proto::PeerList;
    type Error = ExchangeError;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let (len, rest) = match unsigned_varint::decode::usize(src) {
            Ok(parsed) => parsed,
            Err(unsigned_varint::decode::Error::Insufficient) => return Ok(None),
            Err(_) => return Err(ExchangeError::BrokenEncoding),
        };
        if len > MAX_PEERS_FRAME {
            // Refused before the body is read.
            return Err(ExchangeError::Oversized {
                len,
                max: MAX_PEERS_FRAME,
            });
        }
        let Some(body) = rest.get(..len) else {
            return Ok(None);
        };
        if !wire::well_formed(body, wire::Message::PeerList) {
            return Err(ExchangeError::BrokenEncoding);
        }
        Ok(codec().decode(src)?)
    }
}

/// A strict walk over the protobuf encoding of a peer list.
mod wire {
    /// The messages whose fields are known.
    #[derive(Clone, Copy)]
    pub(super) enum Message {
        PeerList,
        Peer,
    }

    fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
        unsigned_varint::decode::u64(bytes).ok()
    }

    /// Whether every field of `bytes` (a `message`) is well formed and ends inside it.
    pub(super) fn well_formed(mut bytes: &[u8], message: Message) -> bool {
        while !bytes.is_empty() {
            let Some((key, rest)) = varint(bytes) else {
                return false;
            };
            let (field, wire_type) = (key >> 3, key & 7);
            if field == 0 {
                return false;
            }
            bytes = match wire_type {
                0 => match varint(rest) {
                    Some((_, rest)) => rest,
                    None => return false,
                },
                1 => match rest.get(8..) {
                    Some(rest) => rest,
                    None => return false,
                },
                5 => match rest.get(4..) {
                    Some(rest) => rest,
                    None => return false,
                },
                2 => {
                    let Some((len, rest)) = varint(rest) else {
                        return false;
                    };
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    let (Some(value), Some(after)) = (rest.get(..len), rest.get(len..)) else {
                        return false;
                    };
                    if matches!(message, Message::PeerList)
                        && field == 1
                        && !well_formed(value, Message::Peer)
                    {
                        return false;
                    }
                    after
                }
                _ => return false,
            };
        }
        true
    }
}

/// Writes one peer list and closes the stream.
pub async fn send_peers<S>(stream: S, peers: &PeerList) -> Result<(), ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = FramedWrite::new(stream, codec());
    framed.send(encode_peers(peers)).await?;
    framed.close().await?;
    Ok(())
}

/// Reads one peer list, then closes the stream.
pub async fn recv_peers<S>(stream: S) -> Result<PeerList, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = FramedRead::new(stream, PeersCodec);
    let message = framed.next().await.ok_or(ExchangeError::Empty)??;
    let mut stream = framed.into_inner();
    // The list is in; a failure to close is the remote's business.
    let _ = stream.close().await;
    Ok(decode_peers(message))
}

#[cfg(test)]
mod tests {
    use asynchronous_codec::Decoder;
    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::*;

    fn sample(n: usize) -> PeerList {
        (0..n)
            .map(|i| {
                let addr: Multiaddr = format!("/ip4/10.0.0.{}/tcp/4001", i % 250)
                    .parse()
                    .expect("address");
                (PeerId::random(), vec![addr])
            })
            .collect()
    }

    #[test]
    fn round_trips_and_cuts_to_the_caps() {
        let peers = sample(3);
        assert_eq!(decode_peers(encode_peers(&peers)), peers);
        let many = sample(MAX_PEERS + 10);
        assert_eq!(decode_peers(encode_peers(&many)).len(), MAX_PEERS);
    }

    #[test]
    fn a_full_list_fits_the_frame_cap() {
        let addr: Multiaddr = "/ip6/2001:db8::1/udp/4001/quic-v1".parse().unwrap();
        let peers: PeerList = (0..MAX_PEERS)
            .map(|_| (PeerId::random(), vec![addr.clone(); MAX_ADDRS_PER_PEER]))
            .collect();
        let mut buf = BytesMut::new();
        asynchronous_codec::Encoder::encode(&mut codec(), encode_peers(&peers), &mut buf).unwrap();
        assert!(buf.len() <= MAX_PEERS_FRAME, "{} bytes", buf.len());
    }

    #[test]
    fn a_list_of_long_addresses_is_cut_to_the_frame_budget_and_entry_len_is_exact() {
        let long: Multiaddr = format!("/dns4/{}/tcp/4001", "a".repeat(250))
            .parse()
            .unwrap();
        let peers: PeerList = (0..MAX_PEERS)
            .map(|_| (PeerId::random(), vec![long.clone(); MAX_ADDRS_PER_PEER]))
            .collect();
        let message = encode_peers(&peers);
        let expected: usize = peers
            .iter()
            .take(message.peers.len())
            .map(|(p, a)| entry_len(p, a))
            .sum();
        assert_eq!(quick_protobuf::MessageWrite::get_size(&message), expected);
        assert!(expected <= MAX_PEERS_FRAME);
        assert!(message.peers.len() < MAX_PEERS);
    }

    #[test]
    fn what_does_not_parse_or_fit_is_dropped() {
        let too_many = proto::PeerList {
            peers: vec![
                proto::Peer {
                    id: Some(PeerId::random().to_bytes()),
                    addrs: vec![],
                };
                MAX_PEERS + 1
            ],
        };
        assert_eq!(decode_peers(too_many).len(), MAX_PEERS);
        let no_id = proto::PeerList {
            peers: vec![proto::Peer::default()],
        };
        assert!(decode_peers(no_id).is_empty());
        let peer = PeerId::random();
        let bad_addr = proto::PeerList {
            peers: vec![proto::Peer {
                id: Some(peer.to_bytes()),
                addrs: vec![vec![0xff, 0xff, 0xff], sample(1)[0].1[0].to_vec()],
            }],
        };
        let decoded = decode_peers(bad_addr);
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].1.len(), 1);
    }

    #[test]
    fn a_nested_field_running_past_its_message_is_refused_not_a_panic() {
        // Found by fuzzing: quick-protobuf 0.8 panics on this (subtract with overflow).
        let crash = [0x07, 0x0a, 0x01, 0x00, 0x48, 0xed, 0x00, 0x00];
        assert!(matches!(
            decode_peers_frame(&crash),
            Err(ExchangeError::BrokenEncoding)
        ));
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_the_body_and_is_no_violation() {
        let mut buf = BytesMut::new();
        // A prefix announcing 1 MiB, and no body at all.
        buf.extend_from_slice(&[0x80, 0x80, 0x40]);
        let err = PeersCodec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, ExchangeError::Oversized { .. }) && !err.is_violation());
    }

    proptest! {
        /// Random bytes never panic the frame decoder or the list decoder.
        #[test]
        fn random_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_peers_frame(&bytes);
        }
    }
}
