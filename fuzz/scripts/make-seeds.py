#!/usr/bin/env python3
"""Write the committed seed corpora under fuzz/corpus/<target>/ (run from anywhere).

The seeds are small, real messages: SIP requests and responses, SDP offers and answers,
RTP/RTCP packets, RFC 4733 events and the lab config, wrapped in each target's input format
(see the header comment of each fuzz target). Re-running rewrites the same files.
"""
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # fuzz/
REPO = os.path.dirname(ROOT)
CORPUS = os.path.join(ROOT, "corpus")


def crlf(s):
    return s.replace("\r\n", "\n").replace("\n", "\r\n")


def sdp(port=40000, direction="sendrecv", pts=(0, 8, 101), extra=""):
    names = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 101: "telephone-event/8000",
             111: "opus/48000/2", 18: "G729/8000"}
    lines = ["v=0", "o=- 4711 1 IN IP4 127.0.0.1", "s=phone", "c=IN IP4 127.0.0.1", "t=0 0",
             "m=audio %d RTP/AVP %s" % (port, " ".join(str(p) for p in pts))]
    lines += ["a=rtpmap:%d %s" % (p, names[p]) for p in pts]
    if 101 in pts:
        lines.append("a=fmtp:101 0-16")
    lines.append("a=ptime:20")
    lines.append("a=" + direction)
    body = "\r\n".join(lines) + "\r\n" + extra
    return body


def sip(start, headers, body=""):
    text = start + "\r\n" + "".join(h + "\r\n" for h in headers)
    text += "Content-Length: %d\r\n\r\n" % len(body.encode())
    return text + body


VIA_T = "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-t1;rport"
VIA_A = "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-a1;rport"

REGISTER = sip("REGISTER sip:127.0.0.1 SIP/2.0", [
    VIA_A, "Max-Forwards: 70", "From: <sip:1001@127.0.0.1>;tag=r1",
    "To: <sip:1001@127.0.0.1>", "Call-ID: reg-1@127.0.0.1", "CSeq: 1 REGISTER",
    "Contact: <sip:1001@127.0.0.1:5071>;expires=3600", "User-Agent: baresip"])
REGISTER_AUTH = sip("REGISTER sip:127.0.0.1 SIP/2.0", [
    VIA_A, "Max-Forwards: 70", "From: <sip:1001@127.0.0.1>;tag=r1",
    "To: <sip:1001@127.0.0.1>", "Call-ID: reg-1@127.0.0.1", "CSeq: 2 REGISTER",
    "Contact: <sip:1001@127.0.0.1:5071>",
    'Authorization: Digest username="1001", realm="bibridge", nonce="abc", '
    'uri="sip:127.0.0.1", response="0123456789abcdef0123456789abcdef", algorithm=MD5'])
INVITE = sip("INVITE sip:1001@127.0.0.1:5060 SIP/2.0", [
    VIA_T, "Max-Forwards: 70", "From: \"Customer\" <sip:+4930123@127.0.0.1:5080>;tag=c1",
    "To: <sip:1001@127.0.0.1>", "Call-ID: call-1@127.0.0.1", "CSeq: 1 INVITE",
    "Contact: <sip:+4930123@127.0.0.1:5080>", "Content-Type: application/sdp",
    "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS"], sdp())
INVITE_COMPACT = crlf("INVITE sip:1002@127.0.0.1 SIP/2.0\n"
    "v: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-t2,SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-x\n"
    "f: <sip:a@127.0.0.1>;tag=c2\nt: <sip:1002@127.0.0.1>\ni: call-2\n"
    "CSeq: 1 INVITE\nm: <sip:a@127.0.0.1:5080>\nc: application/sdp\n"
    "Subject: folded\n  line\nl: %d\n\n") % len(sdp(pts=(0,)).encode()) + sdp(pts=(0,))
ACK = sip("ACK sip:1001@127.0.0.1:5060 SIP/2.0", [
    "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-t1ack;rport", "Max-Forwards: 70",
    "From: <sip:+4930123@127.0.0.1:5080>;tag=c1", "To: <sip:1001@127.0.0.1>;tag=b2",
    "Call-ID: call-1@127.0.0.1", "CSeq: 1 ACK"])
BYE = sip("BYE sip:bibridge@127.0.0.1:5060 SIP/2.0", [
    "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-t1bye;rport", "Max-Forwards: 70",
    "From: <sip:+4930123@127.0.0.1:5080>;tag=c1", "To: <sip:1001@127.0.0.1>;tag=b2",
    "Call-ID: call-1@127.0.0.1", "CSeq: 2 BYE"])
CANCEL = sip("CANCEL sip:1001@127.0.0.1:5060 SIP/2.0", [
    VIA_T, "Max-Forwards: 70", "From: <sip:+4930123@127.0.0.1:5080>;tag=c1",
    "To: <sip:1001@127.0.0.1>", "Call-ID: call-1@127.0.0.1", "CSeq: 1 CANCEL"])
OPTIONS = sip("OPTIONS sip:127.0.0.1 SIP/2.0", [
    "Via: SIP/2.0/TCP 192.0.2.9:5060;branch=z9hG4bK-o1", "Max-Forwards: 70",
    "From: <sip:scan@192.0.2.9>;tag=o1", "To: <sip:100@127.0.0.1>", "Call-ID: opt-1",
    "CSeq: 1 OPTIONS", "Accept: application/sdp"])
INFO = sip("INFO sip:bibridge@127.0.0.1:5060 SIP/2.0", [
    "Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-i1;rport",
    "From: <sip:2001@127.0.0.1>;tag=s1", "To: <sip:*811001@127.0.0.1>;tag=b3",
    "Call-ID: sup-1", "CSeq: 3 INFO", "Content-Type: application/dtmf-relay"],
    "Signal=2\r\nDuration=160\r\n")
SUP_INVITE = sip("INVITE sip:*811001@127.0.0.1 SIP/2.0", [
    "Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-s1;rport", "Max-Forwards: 70",
    "From: <sip:2001@127.0.0.1>;tag=s1", "To: <sip:*811001@127.0.0.1>", "Call-ID: sup-1",
    "CSeq: 1 INVITE", "Contact: <sip:2001@127.0.0.1:5072>", "Content-Type: application/sdp"],
    sdp(port=40010))
RINGING = sip("SIP/2.0 180 Ringing", [
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-b1", "From: <sip:+4930123@127.0.0.1>;tag=b1",
    "To: <sip:1001@127.0.0.1:5071>;tag=ag1", "Call-ID: b-call-1", "CSeq: 1 INVITE",
    "Contact: <sip:1001@127.0.0.1:5071>"])
OK_SDP = sip("SIP/2.0 200 OK", [
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-b1", "From: <sip:+4930123@127.0.0.1>;tag=b1",
    "To: <sip:1001@127.0.0.1:5071>;tag=ag1", "Call-ID: b-call-1", "CSeq: 1 INVITE",
    "Contact: <sip:1001@127.0.0.1:5071>", "Content-Type: application/sdp"],
    sdp(port=40020, pts=(0, 101)))
UNAUTH = sip("SIP/2.0 401 Unauthorized", [
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-r9", "From: <sip:x@127.0.0.1>;tag=x",
    "To: <sip:x@127.0.0.1>;tag=y", "Call-ID: r9", "CSeq: 9 REGISTER",
    'WWW-Authenticate: Digest realm="bibridge", nonce="n1", algorithm=SHA-256, qop="auth"'])

SIP_MSGS = {
    "register": REGISTER, "register_auth": REGISTER_AUTH, "invite_sdp": INVITE,
    "invite_compact": INVITE_COMPACT, "ack": ACK, "bye": BYE, "cancel": CANCEL,
    "options_tcp": OPTIONS, "info_dtmf": INFO, "invite_supervisor": SUP_INVITE,
    "resp_180": RINGING, "resp_200_sdp": OK_SDP, "resp_401": UNAUTH,
}

SDPS = {
    "offer_pcmu_pcma_te": sdp(),
    "offer_opus_g722": sdp(pts=(111, 9, 101)),
    "offer_g729_only": sdp(pts=(18,)),
    "offer_hold_sendonly": sdp(direction="sendonly"),
    "answer_inactive_port0": sdp(port=0, direction="inactive", pts=(0,)),
    "offer_rtcp_ice": sdp(extra="a=rtcp:40001 IN IP4 127.0.0.1\r\na=rtcp-mux\r\n"
                          "a=candidate:1 1 UDP 2130706431 192.168.1.5 40000 typ host\r\n"
                          "a=ice-ufrag:abcd\r\na=x-vendor:thing\r\n"),
    "offer_ip6_two_media": ("v=0\r\no=- 1 2 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n"
                            "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                            "m=audio 5002 RTP/AVP 0 101\r\nc=IN IP6 ::1\r\n"
                            "a=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n"),
    "hold_0000": sdp().replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"),
}


def rtp(seq, ts, ssrc=0x11223344, pt=0, marker=False, payload=b"\xff" * 160, csrc=(),
        ext=None, pad=0):
    b0 = 0x80 | len(csrc) | (0x10 if ext is not None else 0) | (0x20 if pad else 0)
    h = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    h += b"".join(struct.pack("!I", c) for c in csrc)
    if ext is not None:
        h += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    p = payload
    if pad:
        p += b"\x00" * (pad - 1) + bytes([pad])
    return h + p


def rtcp_sr(ssrc=0x11223344):
    # SR with one report block, then SDES CNAME (a compound packet).
    sr = struct.pack("!BBHIIIIII", 0x81, 200, 12, ssrc, 0xE0000000, 0, 160000, 50, 8000)
    sr += struct.pack("!IIIIII", 0x55667788, 0x01000002, 1000, 20, 0, 0)
    cname = b"\x01\x05phone\x00\x00"
    sdes = struct.pack("!BBHI", 0x81, 202, (4 + len(cname)) // 4, ssrc) + cname
    return sr + sdes


def rtcp_bye(ssrc=0x11223344):
    return struct.pack("!BBHI", 0x81, 203, 1, ssrc)


def te(event, end, volume, duration):
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rtp_records(first, recs):
    out = bytes([first])
    for ctrl, pkt in recs:
        out += bytes([ctrl]) + struct.pack("!H", len(pkt)) + pkt
    return out


def main():
    for name, m in SIP_MSGS.items():
        write("sip_parse", name, m)
    # TCP stream: byte 0 = size limit (64 + n*256), byte 1 = chunk size - 1.
    stream = "\r\n\r\n" + REGISTER + INVITE + "\r\n" + BYE
    write("sip_frame", "stream_three", bytes([64, 99]) + stream.encode())
    write("sip_frame", "stream_bytewise", bytes([8, 0]) + (OPTIONS + ACK).encode())
    write("sip_frame", "ping_then_invite", bytes([255, 255]) + ("\r\n\r\n" + INVITE).encode())
    write("sip_frame", "no_length", bytes([10, 20]) + REGISTER.replace("Content-Length: 0\r\n", "").encode())
    write("sip_frame", "too_big", bytes([0, 255]) + INVITE.encode())
    for name, s in SDPS.items():
        write("sdp", name, s)

    # rtp: byte 0 = clock/flags; records ctrl:u8 len:u16 pkt. ctrl bits 3-5 = step (2 = 20 ms).
    step20 = 2 << 3
    stream = [(step20, rtp(100 + i, 160 * i, marker=(i == 0))) for i in range(6)]
    write("rtp", "pcmu_stream", rtp_records(0, stream))
    write("rtp", "reorder_loss", rtp_records(0, [(step20, rtp(s, 160 * s)) for s in (1, 2, 4, 3, 7, 6, 2)]))
    write("rtp", "ssrc_change_rtcp", rtp_records(0x08, [
        (step20, rtp(1, 0)), (step20 | 4, rtcp_sr()), (step20, rtp(2, 160)),
        (step20 | 0x80, rtp(9000, 5, ssrc=0xCAFEBABE)), (step20 | 0x40, rtp(9001, 165, ssrc=0xCAFEBABE)),
        (step20 | 1, rtp(3, 320)), (6 << 3 | 2, rtp(4, 480)), (step20, rtcp_bye())]))
    write("rtp", "csrc_ext_pad", rtp_records(0x13, [
        (step20, rtp(1, 0, csrc=(1, 2), ext=b"\x10\x01\x02\x03", pad=4, pt=111, payload=b"\x01" * 60)),
        (step20, rtp(2, 960, pt=111, payload=b"\x02" * 60)),
        (step20, rtp(0xFFFF, 0xFFFFFF00)), (step20, rtp(0, 0x100))]))
    write("rtp", "wrap_and_jump", rtp_records(0, [(step20, rtp(65534 + i, 0xFFFFFE00 + 160 * i)) for i in range(4)]
                                              + [(step20, rtp(40000, 12345))] + [(step20, rtp(40001, 12505))]))

    # dtmf: 8-byte records ts:u32 payload[4].
    def ev(ts, *blocks):
        return b"".join(struct.pack("!I", ts) + b for b in blocks)
    press5 = ev(8000, te(5, False, 10, 160), te(5, False, 10, 320), te(5, False, 10, 480),
                te(5, True, 10, 640), te(5, True, 10, 640), te(5, True, 10, 640))
    write("dtmf", "press_5", press5)
    write("dtmf", "two_presses_star_hash", ev(1000, te(10, False, 6, 160), te(10, True, 6, 800))
          + ev(5000, te(11, True, 6, 800)) + ev(4000, te(10, True, 6, 800)))
    write("dtmf", "long_segmented", ev(0, te(1, False, 0, 0xFFFF)) + ev(0xFFFF, te(1, False, 0, 800))
          + ev(0xFFFF + 800, te(1, True, 0, 900)))
    write("dtmf", "flash_and_wrap", ev(0xFFFFFF00, te(16, False, 10, 100), te(15, True, 63, 200))
          + ev(50, te(12, True, 10, 100)))
    write("dtmf", "info_body", "Signal=5\r\nDuration=160\r\n")
    write("dtmf", "info_body_code", "signal = 11\nDuration=100\n")

    # jitter: cfg (clock:u8 min:u8 max:u16le init:u8), then op:u8 dt_us:u16le
    # [seq:u16le ts:u32le flags:u8 len:u8] (arbitrary reads integers little-endian).
    def jcfg(clock=0, mn=0, mx=60, init=20):
        return struct.pack("<BBHB", clock, mn, mx, init)

    def push(dt_us, seq, ts, flags=0, ln=160, pop=True):
        return struct.pack("<BHHIBB", 3 if pop else 0, dt_us, seq & 0xFFFF, ts & 0xFFFFFFFF, flags, ln)

    def popop(dt_us):
        return struct.pack("<BH", 2, dt_us)

    rnd = random.Random(4733)
    clean = jcfg() + b"".join(push(20000, 10 + i, 160 * i, flags=4 if i == 0 else 0) for i in range(20))
    write("jitter", "clean_20ms", clean)
    jit = jcfg(mx=120)
    order = list(range(30))
    for i in range(0, 28, 4):
        order[i], order[i + 1] = order[i + 1], order[i]
    for i in order:
        if i % 9 == 5:
            continue  # lost
        jit += push(rnd.randint(0, 40000), 500 + i, 160 * i)
        if i % 7 == 0:
            jit += push(0, 500 + i, 160 * i)  # duplicate
    jit += popop(60000) + popop(60000)
    write("jitter", "jitter_reorder_loss_dup", jit)
    write("jitter", "ssrc_change_talkspurt", jcfg(clock=3, mx=200, init=40)
          + b"".join(push(20000, i, 960 * i) for i in range(5))
          + b"".join(push(20000, 7000 + i, 0x7FFFFFFF + 960 * i, flags=1 | (4 if i == 0 else 0)) for i in range(5))
          + push(20000, 7005, 0x7FFFFFFF + 4800, flags=0x80))
    write("jitter", "wrap_and_pause", jcfg() + b"".join(push(20000, 65530 + i, 0xFFFFFC00 + 160 * i) for i in range(12))
          + struct.pack("<BH", 0x82, 50000) + b"".join(push(20000, 20 + i, 50000 + 160 * i, flags=4 if i == 0 else 0) for i in range(4)))

    # config: the lab config and a few smaller ones.
    with open(os.path.join(REPO, "config", "bibridge.toml"), "rb") as f:
        lab = f.read()
    write("config", "lab", lab)
    write("config", "minimal", "[sip]\nudp = \"127.0.0.1:5060\"\n\n[[users]]\nextension = \"1001\"\npassword = \"x\"\nroles = [\"agent\"]\n")
    write("config", "bad_types", "[sip]\nudp = 5060\nt1_ms = \"fast\"\n[rtp]\nport_min = 30000\nport_max = 20000\n"
          "[[routes]]\nprefix = \"9\"\ntarget = \"trunk:nowhere\"\n")
    write("config", "policy_trunks", "[[users]]\nextension = \"2001\"\npassword = \"p\"\nroles = [\"supervisor\"]\n"
          "groups = [\"sup\"]\n[[trunks]]\nname = \"pstn\"\naddress = \"[::1]:5080\"\ntransport = \"tcp\"\n"
          "[[routes]]\nprefix = \"\"\ntarget = \"trunk:pstn\"\n[compliance]\nnotify = \"tone\"\n")

    # engine: chunks separated by 0xFF, each ctrl byte + datagram. Sources: 0 trunk, 1 agent
    # 1001, 2 supervisor, 3 stranger; bits 3-5 time step (1 = 10 ms, 2 = 100 ms, 4 = 1 s).
    def chunks(*parts):
        return b"\xff".join(bytes([c]) + (m.encode() if isinstance(m, str) else m) for c, m in parts)

    b_ok = OK_SDP  # answer from agent 1001 to bibridge's INVITE (Via branch will not match: still useful)
    write("engine", "trunk_call", chunks((0 | 1 << 3, INVITE), (1 | 2 << 3, RINGING), (1 | 2 << 3, b_ok),
                                         (0 | 2 << 3, ACK), (0 | 4 << 3, BYE)))
    write("engine", "trunk_cancel", chunks((0, INVITE), (0 | 2 << 3, CANCEL), (0 | 5 << 3, ACK)))
    write("engine", "register_and_options", chunks((1, REGISTER), (1 | 1 << 3, REGISTER_AUTH), (3 | 4, OPTIONS)))
    write("engine", "supervisor_and_info", chunks((0, INVITE), (0x40 | 1, b_ok), (2 | 1 << 3, SUP_INVITE),
                                                  (2 | 2 << 3, INFO), (0x80 | 3 << 3, BYE)))
    # A chunk of only the ctrl byte: the simulated phone answers bibridge's last INVITE
    # (bits 0-1: 0 180, 1 200 with SDP, 2 486, 3 BYE).
    write("engine", "trunk_call_answered", chunks((0 | 1 << 3, INVITE), (0 | 1 << 3, b""), (1 | 2 << 3, b""),
                                                  (0 | 1 << 3, ACK), (2 | 2 << 3, SUP_INVITE), (0 | 2 << 3, b""),
                                                  (1 | 2 << 3, b""), (2 | 2 << 3, INFO), (3 | 4 << 3, b"")))
    write("engine", "trunk_call_busy", chunks((0, INVITE), (0 | 1 << 3, b""), (2 | 1 << 3, b""), (0 | 5 << 3, BYE)))
    write("engine", "garbage_and_responses", chunks((3, "HELLO sip:x SIP/2.0\r\n\r\n"), (3, UNAUTH), (1, RINGING),
                                                    (3 | 4, "\r\n\r\n"), (0, INVITE_COMPACT)))


if __name__ == "__main__":
    main()
