//! The peer-exchange wire format: the peers a node is connected to, with addresses.
//!
//! One frame per stream on [`PEERS_PROTOCOL`]: an unsigned-varint length prefix and a protobuf
//! `PeerList` (`src/generated/peers.proto`), at most [`MAX_PEERS_FRAME`] bytes, checked before
//! the body is read. Decoding refuses more than [`MAX_PEERS`] entries, more than
//! [`MAX_ADDRS_PER_PEER`] addresses per entry, and entries that do not parse.

use std::io;

use asynchronous_codec::{FramedRead, FramedWrite};
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, SinkExt, StreamExt};
use libp2p_core::Multiaddr;
use libp2p_identity::PeerId;
use libp2p_swarm::StreamProtocol;

use super::generated::peers as proto;

/// The protocol name of peer exchange.
pub const PEERS_PROTOCOL: StreamProtocol = StreamProtocol::new("/connection-manager/peers/1.0.0");

/// Largest peer-list frame accepted, in bytes (without the length prefix).
pub const MAX_PEERS_FRAME: usize = 16 * 1024;

/// Most peers in one list.
pub const MAX_PEERS: usize = 64;

/// Most addresses per peer in one list.
pub const MAX_ADDRS_PER_PEER: usize = 4;

/// Peers with the addresses to reach them.
pub type PeerList = Vec<(PeerId, Vec<Multiaddr>)>;

/// What can go wrong with a peer list.
#[derive(Debug, thiserror::Error)]
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
    /// More entries than [`MAX_PEERS`].
    #[error("peer list of {count} entries exceeds the cap of {max}")]
    TooManyPeers {
        /// Entries received.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// More addresses for one peer than [`MAX_ADDRS_PER_PEER`].
    #[error("{count} addresses for one peer exceed the cap of {max}")]
    TooManyAddresses {
        /// Addresses received.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// An entry without a valid peer id.
    #[error("peer list entry with an invalid peer id")]
    InvalidPeerId,
    /// An address that does not parse.
    #[error("peer list entry with an invalid multiaddress")]
    InvalidAddress,
}

impl ExchangeError {
    /// Whether the remote broke the protocol (as opposed to the stream failing or ending).
    pub fn is_violation(&self) -> bool {
        !matches!(self, Self::Io(_) | Self::Empty)
    }
}

/// The protobuf message for `peers`, cut to the caps (the sender keeps to them too).
pub fn encode_peers(peers: &PeerList) -> proto::PeerList {
    proto::PeerList {
        peers: peers
            .iter()
            .take(MAX_PEERS)
            .map(|(peer, addrs)| proto::Peer {
                id: Some(peer.to_bytes()),
                addrs: addrs
                    .iter()
                    .take(MAX_ADDRS_PER_PEER)
                    .map(|a| a.to_vec())
                    .collect(),
            })
            .collect(),
    }
}

/// The peers in a received message, or why it is refused.
pub fn decode_peers(message: proto::PeerList) -> Result<PeerList, ExchangeError> {
    if message.peers.len() > MAX_PEERS {
        return Err(ExchangeError::TooManyPeers {
            count: message.peers.len(),
            max: MAX_PEERS,
        });
    }
    message
        .peers
        .into_iter()
        .map(|entry| {
            if entry.addrs.len() > MAX_ADDRS_PER_PEER {
                return Err(ExchangeError::TooManyAddresses {
                    count: entry.addrs.len(),
                    max: MAX_ADDRS_PER_PEER,
                });
            }
            let id = entry.id.ok_or(ExchangeError::InvalidPeerId)?;
            let peer = PeerId::from_bytes(&id).map_err(|_| ExchangeError::InvalidPeerId)?;
            let addrs = entry
                .addrs
                .into_iter()
                .map(|bytes| Multiaddr::try_from(bytes).map_err(|_| ExchangeError::InvalidAddress))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((peer, addrs))
        })
        .collect()
}

/// Decodes one length-prefixed peer-list frame from `frame` (the same rules as
/// [`recv_peers`]; for tests and fuzzing). An incomplete frame is [`ExchangeError::Empty`].
pub fn decode_peers_frame(frame: &[u8]) -> Result<PeerList, ExchangeError> {
    use asynchronous_codec::Decoder;
    let mut buf = bytes::BytesMut::from(frame);
    let message = codec().decode(&mut buf)?.ok_or(ExchangeError::Empty)?;
    decode_peers(message)
}

fn codec() -> quick_protobuf_codec::Codec<proto::PeerList> {
    quick_protobuf_codec::Codec::new(MAX_PEERS_FRAME)
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
    let mut framed = FramedRead::new(stream, codec());
    let message = framed.next().await.ok_or(ExchangeError::Empty)??;
    let mut stream = framed.into_inner();
    // The list is in; a failure to close is the remote's business.
    let _ = stream.close().await;
    decode_peers(message)
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
        assert_eq!(decode_peers(encode_peers(&peers)).unwrap(), peers);
        let many = sample(MAX_PEERS + 10);
        assert_eq!(decode_peers(encode_peers(&many)).unwrap().len(), MAX_PEERS);
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
    fn bad_entries_are_refused_with_a_reason() {
        let too_many = proto::PeerList {
            peers: vec![proto::Peer::default(); MAX_PEERS + 1],
        };
        assert!(matches!(
            decode_peers(too_many),
            Err(ExchangeError::TooManyPeers { .. })
        ));
        let no_id = proto::PeerList {
            peers: vec![proto::Peer::default()],
        };
        assert!(matches!(
            decode_peers(no_id),
            Err(ExchangeError::InvalidPeerId)
        ));
        let bad_addr = proto::PeerList {
            peers: vec![proto::Peer {
                id: Some(PeerId::random().to_bytes()),
                addrs: vec![vec![0xff, 0xff, 0xff]],
            }],
        };
        let err = decode_peers(bad_addr).unwrap_err();
        assert!(matches!(err, ExchangeError::InvalidAddress) && err.is_violation());
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_the_body() {
        let mut buf = BytesMut::new();
        // A prefix announcing 1 MiB, and no body at all.
        buf.extend_from_slice(&[0x80, 0x80, 0x40]);
        assert!(codec().decode(&mut buf).is_err());
    }

    proptest! {
        /// Random bytes never panic the frame decoder or the list decoder.
        #[test]
        fn random_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_peers_frame(&bytes);
        }
    }
}
