"""The py-libp2p peer of scripts/interop.sh.

A plain py-libp2p host (TCP, noise, yamux, ping, identify: the library's defaults; or QUIC
with --quic) that does
not run the connection manager, driven by commands on stdin and reporting what happened as one
JSON object per line on stdout.

Usage: python peer.py [--listen MULTIADDR] [--quic] [--key FILE] [--stream-on-connect]
  --listen MULTIADDR    listen address (default /ip4/127.0.0.1/tcp/0, with --quic
                        /ip4/127.0.0.1/udp/0/quic-v1)
  --quic                run QUIC (new_host(enable_quic=True)) and listen on it
  --key FILE            keep the identity (a 32-byte Ed25519 seed) in FILE, created if
                        missing, so that a restarted peer has the same peer id; a new one is
                        drawn in the middle of the peer id order (see middle_seed)
  --stream-on-connect   on every new connection, open a ping stream on that connection right
                        away and ping once over it (reported as "stream")

Commands (one a line on stdin):
  dial MULTIADDR/p2p/ID     host.connect: "dial" with ok, or error
  pingnew MULTIADDR/p2p/ID  a new connection to the address (swarm.dial_addr, even when one
                            is open) and one ping over it: "ping" with ok, rtt, or error
  hangup PEER_ID            host.disconnect: "hangup" with ok or error
  conns                     "conns": open connections per peer
  stop                      closes the host, then "stopped" and exit 0
Events: "ready" (peer id and listen addresses), "open" and "close" for every connection.
"""

import json
import logging
import os
import secrets
import sys
import time

import multiaddr
import trio

from libp2p import new_host
from libp2p.abc import INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.io.utils import read_exactly
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator

PING_PROTOCOL = TProtocol("/ipfs/ping/1.0.0")
OPERATION_TIMEOUT = 10.0


def emit(event, **fields):
    line = {"event": event, "t": int(time.time() * 1000)}
    line.update(fields)
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def describe_error(error):
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def parse_args(argv):
    args = {"listen": None, "quic": False, "key": None, "stream_on_connect": False}
    i = 0
    while i < len(argv):
        if argv[i] == "--listen":
            args["listen"] = argv[i + 1]
            i += 2
        elif argv[i] == "--key":
            args["key"] = argv[i + 1]
            i += 2
        elif argv[i] == "--quic":
            args["quic"] = True
            i += 1
        elif argv[i] == "--stream-on-connect":
            args["stream_on_connect"] = True
            i += 1
        else:
            sys.stderr.write(f"peer.py: unknown argument {argv[i]}\n")
            sys.exit(2)
    if args["listen"] is None:
        args["listen"] = "/ip4/127.0.0.1/udp/0/quic-v1" if args["quic"] else "/ip4/127.0.0.1/tcp/0"
    return args


def middle_seed():
    """A seed whose public key's first byte is in the middle of its range.

    rust-libp2p orders peer ids by their bytes, so nodes with a smaller and with a larger peer
    id than this peer's are both common (scripts/interop.sh starts nodes until it has the one
    it needs).
    """
    while True:
        seed = secrets.token_bytes(32)
        first = create_new_key_pair(seed).public_key.to_bytes()[0]
        if 0x60 <= first < 0xA0:
            return seed


def load_key(path):
    if path is None:
        return create_new_key_pair(secrets.token_bytes(32))
    try:
        with open(path, "rb") as f:
            seed = f.read()
    except FileNotFoundError:
        seed = middle_seed()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
    return create_new_key_pair(seed)


def connection_fields(conn):
    try:
        peer = str(conn.muxed_conn.peer_id)
    except Exception:  # noqa: BLE001 - report what we can
        peer = "?"
    try:
        remote = ",".join(str(a) for a in conn.get_transport_addresses())
    except Exception:  # noqa: BLE001
        remote = "?"
    direction = getattr(conn, "direction", "?")
    direction = getattr(direction, "name", direction)  # an enum: INBOUND, OUTBOUND
    return {"peer": peer, "conn": hex(id(conn)), "dir": str(direction).lower(), "remote": remote}


# One ping at a time per connection: rust-libp2p's ping handler answers one inbound ping
# stream per connection and drops (resets) the previous one when another arrives, so the
# --stream-on-connect ping and a `pingnew` ping racing on the same new connection reset each
# other whatever the node does (seen as StreamReset in about one run in three).
PING_LOCKS = {}


async def ping_over(host, conn):
    """One ping over this very connection, returning the round trip in ms."""
    async with PING_LOCKS.setdefault(id(conn), trio.Lock()):
        return await _ping_over(host, conn)


async def _ping_over(host, conn):
    with trio.fail_after(OPERATION_TIMEOUT):
        stream = await conn.new_stream()
        try:
            await host.multiselect_client.select_one_of(
                [PING_PROTOCOL], MultiselectCommunicator(stream), int(OPERATION_TIMEOUT)
            )
            data = secrets.token_bytes(32)
            started = time.monotonic()
            await stream.write(data)
            echoed = await read_exactly(stream, 32)
            rtt = int((time.monotonic() - started) * 1000)
            if echoed != data:
                raise ValueError("wrong pong")
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await stream.close()
                except Exception:  # noqa: BLE001 - the ping's outcome is what counts
                    pass
    return rtt


class Reporter(INotifee):
    def __init__(self, host, nursery, stream_on_connect):
        self.host = host
        self.nursery = nursery
        self.stream_on_connect = stream_on_connect

    async def opened_stream(self, network, stream):
        pass

    async def closed_stream(self, network, stream):
        pass

    async def connected(self, network, conn):
        fields = connection_fields(conn)
        emit("open", **fields)
        if self.stream_on_connect:
            self.nursery.start_soon(self._stream, conn, fields)

    async def _stream(self, conn, fields):
        try:
            rtt = await ping_over(self.host, conn)
            emit("stream", ok=True, rtt=rtt, **fields)
        except BaseException as error:  # noqa: BLE001 - trio.Cancelled too: report, re-raise
            emit("stream", ok=False, error=describe_error(error), **fields)
            if isinstance(error, trio.Cancelled):
                raise

    async def disconnected(self, network, conn):
        emit("close", **connection_fields(conn))

    async def listen(self, network, multiaddr):
        pass

    async def listen_close(self, network, multiaddr):
        pass


def count_connections(host):
    network = host.get_network()
    return {str(peer): len(conns) for peer, conns in network.get_connections_map().items() if conns}


async def dial(host, target):
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(target))
        with trio.fail_after(OPERATION_TIMEOUT):
            await host.connect(info)
        emit("dial", target=target, ok=True, peer=str(info.peer_id))
    except Exception as error:  # noqa: BLE001 - every failure is reported
        emit("dial", target=target, ok=False, error=describe_error(error))


async def ping_new(host, target):
    try:
        address = multiaddr.Multiaddr(target)
        info = info_from_p2p_addr(address)
        transport = address.decapsulate(multiaddr.Multiaddr(f"/p2p/{info.peer_id}"))
        with trio.fail_after(OPERATION_TIMEOUT):
            conn = await host.get_network().dial_addr(transport, info.peer_id)
        rtt = await ping_over(host, conn)
        emit("ping", target=target, ok=True, rtt=rtt)
    except Exception as error:  # noqa: BLE001
        emit("ping", target=target, ok=False, error=describe_error(error))


async def hang_up(host, target):
    try:
        await host.disconnect(ID.from_base58(target))
        emit("hangup", target=target, ok=True)
    except Exception as error:  # noqa: BLE001
        emit("hangup", target=target, ok=False, error=describe_error(error))


async def read_lines():
    """Lines of stdin, as they come (trio has no async stdin of its own)."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    while True:
        chunk = await stream.receive_some(4096)
        if not chunk:
            if buffer:
                yield buffer.decode()
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode()


async def main():
    args = parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.CRITICAL)
    listen = multiaddr.Multiaddr(args["listen"])
    if args["quic"]:
        host = new_host(key_pair=load_key(args["key"]), enable_quic=True, listen_addrs=[listen])
    else:
        host = new_host(key_pair=load_key(args["key"]))
    async with trio.open_nursery() as nursery:
        host.get_network().register_notifee(Reporter(host, nursery, args["stream_on_connect"]))
        async with host.run(listen_addrs=[listen]):
            emit(
                "ready",
                id=str(host.get_id()),
                addrs=[str(a) for a in host.get_addrs()],
                version="py-libp2p",
            )
            async for line in read_lines():
                words = line.split()
                if not words:
                    continue
                command, target = words[0], (words[1] if len(words) > 1 else "")
                if command == "dial":
                    nursery.start_soon(dial, host, target)
                elif command == "pingnew":
                    nursery.start_soon(ping_new, host, target)
                elif command == "hangup":
                    nursery.start_soon(hang_up, host, target)
                elif command == "conns":
                    emit("conns", peers=count_connections(host))
                elif command == "stop":
                    break
                else:
                    emit("refused", line=line, error="unknown command")
        # host.run's exit closed the host and its connections.
        emit("stopped", conns=sum(count_connections(host).values()))
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
