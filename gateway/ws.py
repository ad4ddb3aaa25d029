"""The WebSocket endpoint `/v1/ws`: hello, then one frame at a time, in order.

The gateway parses and checks frames, answers pings and reads, and turns writes into commands
on the log; chat_core answers those. Every error a client can cause becomes an `error` frame
here, in one place; nothing a client sends can end the reader except a protocol close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiohttp import WSMsgType, web

from delivery.fanout import Fanout
from gateway.admission import GOING_AWAY_REASON, Admission
from gateway.calls import calls_on
from gateway.routing import route
from gateway.contacts import Contacts
from gateway.hub import Hub
from gateway.presence import GatewayPresence
from gateway.reads import Reads
from gateway.received import ReceivedAcks
from gateway.request_limits import RequestLimits
from gateway.rest import client_ip
from gateway.session import Session
from gateway.write_facts import EDGE_CHECKED, WriteFacts
from parley import events as E
from parley import frames as F
from parley import hops, metrics, tracing
from parley.accounts import Authenticator
from parley.closecodes import CloseCode
from parley.errors import BadRequest, Forbidden, Internal, ParleyError, RateLimited, Unauthorized, Unavailable
from parley.frames import FrameError, encode, error_frame
from parley.health import count_refused
from parley.ids import new_session_id
from parley.limits import Limits
from parley.ports import LogProducer
from parley.records import Command, EdgeFacts, EventRecord
from parley.tracing import Span, SpanContext

log = logging.getLogger(__name__)
SUBPROTOCOLS = ("parley.v1.json",)
_CALL_OPS = (F.CallStart, F.CallJoin, F.CallDecline, F.CallLeave, F.CallEnd)


def now_ms() -> int:
    return int(time.time() * 1000)


class WsEndpoint:
    def __init__(self, hub: Hub, reads: Reads, auth: Authenticator, commands: LogProducer[Command],
                 fanout: Fanout, contacts: Contacts, limits: Limits, request_limits: RequestLimits,
                 write_facts: WriteFacts, presence: GatewayPresence | None = None, *,
                 received: ReceivedAcks | None = None, admission: Admission | None = None) -> None:
        self._hub = hub
        self._presence = presence
        self._contacts = contacts
        self._reads = reads
        self._auth = auth
        self._commands = commands
        self._fanout = fanout
        self._limits = limits
        self._request_limits = request_limits
        self._write_facts = write_facts
        self._received = received if received is not None else ReceivedAcks(commands, hub.gateway_id)
        self._admission = admission if admission is not None else Admission(limits.max_handshakes_per_ip)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Refused before the upgrade, as HTTP errors (JSON, Retry-After): no WebSocket is made.
        admission = self._admission
        if admission.draining:
            # Only a request that was already being read when the listener closed gets here.
            metrics.CONNECTS.labels("http_503").inc()
            raise Unavailable("this gateway is shutting down: connect again", retry_after_ms=1000)
        ip = client_ip(request)
        if not admission.admit(ip):
            metrics.CONNECTS.labels("http_429").inc()
            raise RateLimited(f"too many connections from this address before hello: at most "
                              f"{self._limits.max_handshakes_per_ip}", retry_after_ms=1000)
        ws = web.WebSocketResponse(max_msg_size=self._limits.max_frame_bytes, compress=False,
                                   protocols=SUBPROTOCOLS)
        # The handshake's span ends once hello is answered; each frame's span links to it (a
        # span lasting the whole connection would never be exported while it is open).
        connect = tracing.start("ws.connect", None, tracing.SpanKind.SERVER)
        try:
            await ws.prepare(request)
            hello = await self._hello(request, ws)
        finally:
            admission.release(ip)
            if connect is not None:
                connect.end()
        if hello is None:
            metrics.CONNECTS.labels(metrics.result_of(ws.close_code)).inc()
            return ws
        session, welcome = hello
        metrics.CONNECTS.labels("ok").inc()
        links = (connect.get_span_context(),) if connect is not None else ()
        hub = self._hub
        try:
            # Findable before it hears `ok`; online news only for a first session anywhere.
            first_here = online = hub.add(session)
            if online and self._presence is not None:
                # Located before the follower reads its conversations, so that a membership change
                # meanwhile reaches this gateway, and the follower reads again.
                online = await self._presence.connected(session.user)
            if first_here and hub.follower is not None:
                try:  # following its large conversations before `ok`: the client's sync covers the rest
                    await hub.follower.connected(session.user)
                except Unavailable as err:
                    session.discard()
                    await ws.send_frame(error_frame(err, None), WSMsgType.TEXT)
                    await ws.close(code=CloseCode.GOING_AWAY, message=b"unavailable: reconnect")
                    return ws
            await ws.send_frame(welcome, WSMsgType.TEXT)
            if online:
                self._contacts.announce(session.user, online=True)
            async for msg in ws:
                session.last_seen = time.monotonic()
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(session, msg.data, links)
                elif msg.type is WSMsgType.BINARY:
                    session.push(error_frame(BadRequest("frames are JSON text; binary is not accepted")))
                else:
                    break
        finally:
            offline = hub.remove(session)  # its last session here
            if offline and hub.follower is not None:
                await hub.follower.disconnected(session.user)
            if offline and self._presence is not None:
                offline = await self._presence.disconnected(session.user)
            if offline:
                self._contacts.announce(session.user, online=False)
            await session.stop()
            if not ws.closed:
                await ws.close()
            metrics.DISCONNECTS.labels(metrics.result_of(ws.close_code)).inc()
        return ws

    # ---- hello ----------------------------------------------------------------------------

    async def _hello(self, request: web.Request, ws: web.WebSocketResponse) -> tuple[Session, bytes] | None:
        """The session and its `ok` frame, or None once the socket is closed with the reason."""
        try:
            async with asyncio.timeout(self._limits.hello_timeout_s) as deadline:
                with self._admission.hello_wait(deadline):
                    msg = await ws.receive()
        except TimeoutError:
            if self._admission.draining:  # the drain ended the wait: reconnect elsewhere
                await ws.close(code=CloseCode.GOING_AWAY, message=GOING_AWAY_REASON)
            else:
                await ws.close(code=CloseCode.NO_HELLO, message=b"no hello in time")
            return None
        if msg.type is not WSMsgType.TEXT:
            if not ws.closed:
                await ws.close(code=CloseCode.NO_HELLO, message=b"the first frame must be hello")
            return None
        try:
            req = F.decode_request(msg.data, self._limits.max_text_chars)
        except FrameError as exc:
            await ws.send_frame(error_frame(exc.error, exc.rid), WSMsgType.TEXT)
            await ws.close(code=CloseCode.NO_HELLO, message=b"the first frame must be hello")
            return None
        if not isinstance(req, F.Hello):
            await ws.send_frame(error_frame(BadRequest("the first frame must be hello"), req.rid), WSMsgType.TEXT)
            await ws.close(code=CloseCode.NO_HELLO, message=b"the first frame must be hello")
            return None
        try:  # the token, and the account it names (suspended, deleted, revoked: refused here)
            who = await self._auth.principal(req.token)
        except ParleyError as err:
            await ws.send_frame(error_frame(err, req.rid), WSMsgType.TEXT)
            if isinstance(err, Forbidden):
                await ws.close(code=CloseCode.POLICY, message=err.message.encode()[:120])
            else:
                await ws.close(code=CloseCode.BAD_TOKEN, message=b"bad token")
            return None
        if self._hub.session_count(who.user_id) >= self._limits.max_sessions_per_user:
            # Counted on this gateway; nothing awaits between here and the caller's hub.add, so
            # two hellos at once cannot both take the last place.
            await self._refuse_extra_session(ws, req.rid)
            return None
        transport = request.transport
        if transport is None:  # the peer left during the handshake
            return None
        if self._admission.draining:
            # Began to drain while the token was checked: the drain told the sessions it had
            # 4009, so this one is told here (nothing awaits between here and the hub.add).
            await ws.close(code=CloseCode.GOING_AWAY, message=GOING_AWAY_REASON)
            return None
        session = Session(new_session_id(), who.user_id, req.device_id, ws, transport,
                          self._limits.send_queue_max, max_queue_bytes=self._limits.send_queue_max_bytes,
                          role=who.role, guest=who.guest, claims=who.claims, name=who.account.username)
        return session, encode(E.HelloResult(
            rid=req.rid, session_id=session.id, user_id=session.user, server_time=now_ms(),
            heartbeat_s=self._limits.heartbeat_s, limits=self._limits.public(),
            expires_at=who.claims.expires_at,
        ))

    async def _refuse_extra_session(self, ws: web.WebSocketResponse, rid: str) -> None:
        cap = self._limits.max_sessions_per_user
        # A session that died without a close holds its place until the idle close at the latest.
        refusal = RateLimited(f"too many sessions: at most {cap} per user at once; close one",
                              retry_after_ms=2 * self._limits.heartbeat_s * 1000)
        await ws.send_frame(error_frame(refusal, rid), WSMsgType.TEXT)
        await ws.close(code=CloseCode.TOO_MANY_SESSIONS, message=b"too many sessions")

    # ---- requests -------------------------------------------------------------------------

    async def _on_frame(self, session: Session, data: str, links: Sequence[SpanContext] = ()) -> None:
        span = tracing.start("ws.frame", None, tracing.SpanKind.SERVER, links=links)
        with tracing.active(span):
            await self._on_request(session, data, span)

    async def _on_request(self, session: Session, data: str, span: Span | None) -> None:
        try:
            req = F.decode_request(data, self._limits.max_text_chars)
        except FrameError as exc:
            session.push(error_frame(exc.error, exc.rid))
            return
        if span is not None:
            span.update_name(f"ws {type(req).__name__}")
        try:
            if isinstance(req, F.Received):  # answered now, sent on gathered (gateway/received.py)
                self._received.note(session.user, req.conv, req.seq)
                session.push(encode(E.Ok(rid=req.rid)))
                return
            if F.is_write(req):
                await self._write(session, req)  # answered later, by chat_core
                return
            session.push(await self._answer(session, req))
            metrics.answered(req)
        except ParleyError as err:
            count_refused(err)
            metrics.answered(req, err)
            session.push(error_frame(err, req.rid))
        except Exception:
            log.exception("request %s failed", type(req).__name__)
            session.push(error_frame(Internal("internal error"), req.rid))

    async def _answer(self, session: Session, req: F.AnyRequest) -> bytes:
        if isinstance(req, F.Ping):
            return encode(E.PingResult(rid=req.rid, server_time=now_ms()))
        if isinstance(req, F.Typing):
            await self._typing(session, req)
            return encode(E.Ok(rid=req.rid))
        if isinstance(req, F.Hello):
            raise BadRequest("this session already said hello")
        await self._request_limits.hit(session.user, session.guest, req)
        if isinstance(req, F.Auth):
            return await self._reauth(session, req)
        if isinstance(req, F.PresenceGet):
            return encode(E.PresenceResult(rid=req.rid, presence=await self._contacts.status(session.user, req.users)))
        await session.settled()
        if isinstance(req, F.History):
            return encode(E.HistoryResult(rid=req.rid, messages=await self._reads.history(session.user, req)))
        if isinstance(req, F.Sync):
            return encode(E.SyncResult(rid=req.rid, convs=await self._reads.sync(session.user, req.since)))
        if isinstance(req, F.ConvList):
            convs, profiles = await self._reads.conv_list(session.user)
            return encode(E.ConvListResult(rid=req.rid, convs=convs, profiles=profiles))
        if isinstance(req, F.ConvMembers):
            return encode(await self._reads.members(session.user, req, now_ms()))
        if isinstance(req, F.ConvSanctions):
            return encode(await self._reads.sanctions(session.user, req, now_ms()))
        if isinstance(req, F.Receipts):
            return encode(await self._reads.receipts(session.user, req.rid, req.conv, req.seq))
        if isinstance(req, F.InviteList):
            return encode(E.InviteListResult(rid=req.rid, invites=await self._reads.invitations(session.user)))
        raise BadRequest(f"unsupported op {type(req).__name__}")

    async def _write(self, session: Session, req: F.WriteRequest) -> None:
        if req.rid in session.inflight:
            raise BadRequest("a request with this rid is still in flight")
        if len(session.inflight) >= self._limits.inflight_max:
            raise RateLimited("too many requests in flight; wait for replies", retry_after_ms=100)
        if session.guest and isinstance(req, (F.ConvCreate, F.ConvInvite)):
            raise Forbidden("guests cannot create conversations, open direct chats or invite")
        await self._request_limits.hit(session.user, session.guest, req)
        edge: EdgeFacts | None = None
        if isinstance(req, EDGE_CHECKED):
            req, edge = await self._write_facts.establish(session.user, req)
        conv = route(session.user, req)
        if isinstance(req, _CALL_OPS):  # what only calls tell apart: the rest of the log goes without
            device = session.device or session.id
            edge = EdgeFacts(device=device)
            if isinstance(req, (F.CallStart, F.CallJoin)):
                # The answer comes back with a grant; the hub turns it into a LiveKit join.
                calls_on(self._hub.call_joins).expect(session.id, req.rid, session.user, device, session.name)
        if isinstance(req, (F.UserBlock, F.UserUnblock)):
            self._reads.blocks.forget(session.user)
            self._reads.blocks.forget(req.user)  # if they are on this gateway; elsewhere within the TTL
        # In flight before it is published: with a broker, the reply can beat publish()'s return.
        session.inflight[req.rid] = time.monotonic() + self._limits.command_timeout_s
        try:
            with hops.GATEWAY_ACK.time(), tracing.active(publish := tracing.inner("command.publish", tracing.SpanKind.PRODUCER)):
                await self._commands.publish(Command(conv, session.user, self._hub.gateway_id, session.id, req,
                                                     session.role, session.guest, hops.start(), edge,
                                                     tracing.carried(publish)))
        except BaseException:
            session.answered(req.rid)  # the error frame is its answer
            if self._hub.call_joins is not None:
                self._hub.call_joins.forget(session.id, req.rid)
            raise

    async def _reauth(self, session: Session, req: F.Auth) -> bytes:
        """A fresh token for the live session: checked like hello's; the session then stands on
        it (its expiry, its role). A refused one leaves the session on the token it had."""
        who = await self._auth.principal(req.token)
        if who.user_id != session.user:
            raise Unauthorized("the token is another user's")
        session.claims, session.role = who.claims, who.role
        return encode(E.AuthResult(rid=req.rid, expires_at=who.claims.expires_at))

    async def _typing(self, session: Session, req: F.Typing) -> None:
        if not session.typing_due(req.conv, time.monotonic(), self._limits.typing_interval_s):
            return  # one signal per interval is all the members need: the rest is dropped
        try:
            await self._request_limits.hit(session.user, session.guest, req)
            await self._reads.readable(req.conv, session.user)
        except ParleyError:
            session.typing_refused(req.conv)
            raise
        record = EventRecord(req.conv, E.encode_event(E.UserTyping(conv=req.conv, user=session.user)))
        # Typing is hidden between users who block each other, either way.
        await self._fanout.send(record, skip_user=session.user, skip=await self._reads.blocks.peers(session.user))
