#!/usr/bin/env python3
"""The server's floor for a history sync: fetch alice's whole archive over one raw stream
(STARTTLS, SASL PLAIN, no presence), pages of --max backwards (or --forward), reading as
fast as Python can, and print the wall time and Prosody's CPU time for it. Natter's sync
is measured against this (bench/results-*-sync.md).
usage: mam-probe.py PROSODY_PID [--sm] [--max N] [--forward]
  e.g. mam-probe.py $(cat /tmp/xb/srv/prosody.pid)   (after prosody-env.sh restore ... seeded)"""
import base64, re, socket, ssl, sys, time, os

pid = int(sys.argv[1])
SM = "--sm" in sys.argv
MAX = int(sys.argv[sys.argv.index("--max") + 1]) if "--max" in sys.argv else 250
FWD = "--forward" in sys.argv

def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

s = socket.create_connection(("127.0.0.1", 5222))
HDR = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
buf = b""
def recv_until(pat):
    global buf
    while True:
        m = re.search(pat, buf)
        if m:
            out = buf[: m.end()]
            buf = buf[m.end():]
            return out
        d = s.recv(1 << 20)
        if not d:
            raise SystemExit("closed: " + buf[-500:].decode(errors="replace"))
        buf += d
s.sendall(HDR.encode()); recv_until(rb"</stream:features>")
s.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); recv_until(rb"<proceed[^>]*/>")
# The kit's own server on 127.0.0.1: a measuring tool, not a client (no verification).
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(s, server_hostname="localhost"); buf = b""
s.sendall(HDR.encode()); recv_until(rb"</stream:features>")
tok = base64.b64encode(b"\0alice\0benchpass").decode()
s.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{tok}</auth>".encode())
recv_until(rb"<success[^>]*(/>|</success>)"); buf = b""
s.sendall(HDR.encode()); recv_until(rb"</stream:features>")
s.sendall(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>probe</resource></bind></iq>")
recv_until(rb"</iq>")
if SM:
    s.sendall(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>"); recv_until(rb"<enabled[^>]*/>")

t0 = time.time(); c0 = cpu(); n = 0; pages = 0; cursor = None; h = 1 if SM else 0
while True:
    rsm = f"<max>{MAX}</max>"
    if FWD:
        rsm += f"<after>{cursor}</after>" if cursor else ""
    else:
        rsm += f"<before>{cursor}</before>" if cursor else "<before/>"
    s.sendall(f"<iq type='set' id='q{pages}'><query xmlns='urn:xmpp:mam:2' queryid='x{pages}'><set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>".encode())
    while True:
        d = s.recv(1 << 20)
        if not d:
            raise SystemExit("closed")
        buf += d
        if SM:
            # answer ack requests with a count of results + iqs so far
            h += buf.count(b"<result xmlns='urn:xmpp:mam:2'") - 0
        m = re.search(rb"<iq[^>]*id='q%d'.*?</iq>" % pages, buf, re.S)
        if m:
            break
    n += buf.count(b"<result "); nbytes = globals().get("nbytes",0) + len(buf); globals()["nbytes"]=nbytes
    fin = m.group(0)
    pages += 1
    if SM:
        s.sendall(f"<a xmlns='urn:xmpp:sm:3' h='{n + pages}'/>".encode())
    complete = b"complete='true'" in fin
    tag = rb"<last>(.*?)</last>" if FWD else rb"<first[^>]*>(.*?)</first>"
    mm = re.search(tag, fin)
    buf = b""
    if complete or not mm:
        break
    cursor = mm.group(1).decode()
print(f"bytes={nbytes} sm={SM} max={MAX} fwd={FWD}: {n} msgs {pages} pages in {time.time()-t0:.2f}s, prosody {cpu()-c0:.2f} CPU-s")
