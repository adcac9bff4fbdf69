#!/usr/bin/env python3
"""Straks benchmark (issue 13), against a release build of `fkoeko serve` on SQLite, in one run:

1. Layout: the same SF1590_A delivery of one finansbilag with 10,000 posteringer (about 2.6 MB), sent as a SOAP
   call on one line and indented, each POSTed and booked (a new LeveranceId and BilagId per call, else the
   bytes are the same), and each timed against `xmllint --noout --schema` on the same bytes (a SOAP envelope
   schema that imports schemas/sf1590a.xsd for the Body). Median of --runs. Goals: one line within 1.2x of
   indented; both within 3x of xmllint.
2. Memory: 8 clients POST an 18 MB delivery (7 finansbilag of 10,000 posteringer) at once; the server's peak
   resident memory (VmHWM) is read from /proc. Goal: within server.max_body_bytes_in_flight plus 100 MB. A call
   answered 503 (over the budget) is sent again after its Retry-After.

    python3 benches/straks.py [--runs N] [--clients N] [--skip-memory]
"""
import argparse
import datetime
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENDER = "6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01"  # KY in tests/fixtures/sortiment.toml
AUTHORITY = "29189846"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
ENVELOPE_XSD = f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{SOAP11}" elementFormDefault="qualified">
  <xs:import namespace="urn:fkoeko:sf1590a:v1" schemaLocation="{ROOT}/schemas/sf1590a.xsd"/>
  <xs:element name="Envelope"><xs:complexType><xs:sequence>
    <xs:element name="Header" minOccurs="0"><xs:complexType><xs:sequence>
      <xs:any processContents="lax" minOccurs="0" maxOccurs="unbounded"/></xs:sequence></xs:complexType></xs:element>
    <xs:element name="Body"><xs:complexType><xs:sequence>
      <xs:any namespace="##other" processContents="strict"/></xs:sequence></xs:complexType></xs:element>
  </xs:sequence></xs:complexType></xs:element>
</xs:schema>
"""


def delivery(bilag, per_bilag, indented):
    """A SOAP 1.1 call, one tag a line with two spaces a level when indented, else all on one line."""
    today = datetime.date.today().isoformat()
    lines = []

    def tag(depth, text):
        lines.append(("  " * depth if indented else "") + text)

    tag(0, '<?xml version="1.0" encoding="UTF-8"?>')
    tag(0, f'<soap:Envelope xmlns:soap="{SOAP11}">')
    tag(1, "<soap:Body>")
    tag(2, '<ModtagFinansbilag xmlns="urn:fkoeko:sf1590a:v1">')
    tag(3, f"<LeveranceId>{uuid.uuid4()}</LeveranceId>")
    tag(3, f"<AfsenderSystem>{SENDER}</AfsenderSystem>")
    tag(3, f"<Myndighed>{AUTHORITY}</Myndighed>")
    tag(3, f"<Dannet>{today}T02:00:00+01:00</Dannet>")
    for b in range(bilag):
        tag(3, "<Finansbilag>")
        tag(4, f"<BilagId>B-{uuid.uuid4().hex[:20]}-{b}</BilagId>")
        tag(4, f"<Bilagsdato>{today}</Bilagsdato>")
        for p in range(per_bilag // 2):
            amount = f"{p % 9000 + 100}.{p % 100:02d}"
            for side, fn, dr, art in (("D", "5.57.72", "1", "5.2"), ("K", "9.51.01", "0", "9.5")):
                tag(4, "<Postering>")
                tag(5, f"<PosteringId>{2 * p + (1 if side == 'D' else 2)}</PosteringId>")
                tag(5, f"<Beloeb>{amount}</Beloeb>")
                tag(5, f"<DebetKredit>{side}</DebetKredit>")
                tag(5, f"<Posteringsdato>{today}</Posteringsdato>")
                tag(5, "<Posteringstekst>Kontanthjælp</Posteringstekst>")
                tag(5, "<Kontering>")
                tag(6, f"<Funktion>{fn}</Funktion>")
                tag(6, f"<Dranst>{dr}</Dranst>")
                tag(6, f"<Art>{art}</Art>")
                tag(5, "</Kontering>")
                tag(4, "</Postering>")
        tag(3, "</Finansbilag>")
    tag(2, "</ModtagFinansbilag>")
    tag(1, "</soap:Body>")
    tag(0, "</soap:Envelope>")
    return ("\n" if indented else "").join(lines).encode("utf-8")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body):
    """POSTs a call, sending it again after Retry-After while the server is over its budget; returns seconds."""
    started = time.monotonic()
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
        conn.request("POST", "/sf1590a", body=body, headers={"Content-Type": "text/xml; charset=utf-8"})
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        conn.close()
        if response.status == 503:
            time.sleep(float(response.getheader("Retry-After", "1")))
            continue
        if response.status != 200 or "Afvist" in text or "Accepteret" not in text:
            sys.exit(f"unexpected answer {response.status}: {text[:2000]}")
        return time.monotonic() - started


def xmllint(schema, body, work):
    path = os.path.join(work, f"{uuid.uuid4()}.xml")
    with open(path, "wb") as f:
        f.write(body)
    started = time.monotonic()
    result = subprocess.run(["xmllint", "--noout", "--schema", schema, path], capture_output=True, text=True)
    seconds = time.monotonic() - started
    os.remove(path)
    if result.returncode != 0:
        sys.exit(f"xmllint refused the delivery: {result.stderr[-2000:]}")
    return seconds


def validate(binary, env, body, work):
    """`fkoeko validate` on the same bytes (a process of its own, on the same database): seconds."""
    path = os.path.join(work, f"{uuid.uuid4()}.xml")
    with open(path, "wb") as f:
        f.write(body)
    started = time.monotonic()
    result = subprocess.run([binary, "validate", path], env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - started
    os.remove(path)
    if result.returncode != 0 or "Accepteret" not in result.stdout:
        sys.exit(f"fkoeko validate refused the delivery: {result.stdout[-2000:]} {result.stderr[-2000:]}")
    return seconds


def peak_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "fkoeko")
    work = tempfile.mkdtemp(prefix="fkoeko-straks-bench-")
    schema = os.path.join(work, "envelope.xsd")
    with open(schema, "w") as f:
        f.write(ENVELOPE_XSD)
    port = free_port()
    budget = 128 * 1024 * 1024
    env = dict(os.environ)
    env.update({
        "FKOEKO_SERVER__LISTEN": f"127.0.0.1:{port}",
        "FKOEKO_ADMIN__LISTEN": "127.0.0.1:0",
        "FKOEKO_DATABASE__URL": os.path.join(work, "bench.db"),
        "FKOEKO_PATHS__SORTIMENT": os.path.join(ROOT, "tests", "fixtures", "sortiment.toml"),
        "FKOEKO_PATHS__MAPPINGS": shutil.copytree(os.path.join(ROOT, "mappings"), os.path.join(work, "mappings")),
        "FKOEKO_ALERTS__ENABLED": "false",
        "FKOEKO_SERVER__MAX_BODY_BYTES_IN_FLIGHT": str(budget),
        "RUST_LOG": "warn",
    })
    server = subprocess.Popen([binary, "serve"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        # Warm up: schemas compiled, mappings cached, database pages in.
        post(port, delivery(1, 10, False))

        times = {"one line": [], "indented": []}
        dry = {"one line": [], "indented": []}
        lint = {"one line": [], "indented": []}
        sizes = {}
        for _ in range(args.runs):
            for layout, indented in (("one line", False), ("indented", True)):
                body = delivery(1, 10_000, indented)
                sizes[layout] = len(body)
                times[layout].append(post(port, body))
                dry[layout].append(validate(binary, env, body, work))
                lint[layout].append(xmllint(schema, body, work))
        med = {k: statistics.median(v) for k, v in times.items()}
        dmed = {k: statistics.median(v) for k, v in dry.items()}
        lmed = {k: statistics.median(v) for k, v in lint.items()}
        print(f"one finansbilag of 10,000 posteringer; median of {args.runs}; {os.cpu_count()} CPUs")
        print("  POSTed and booked (SQLite); `fkoeko validate`: the same intake, rules and mapping, booking nothing")
        for layout in ("one line", "indented"):
            print(f"  {layout:9} {sizes[layout] / 1e6:5.2f} MB   POST {med[layout]:6.3f} s   validate {dmed[layout]:6.3f} s   "
                  f"xmllint --schema {lmed[layout]:6.3f} s   POST/xmllint {med[layout] / lmed[layout]:5.2f}x  (goal: at most 3x)")
        print(f"  one line / indented: {med['one line'] / med['indented']:5.2f}x  (goal: at most 1.2x)")

        if not args.skip_memory:
            bodies = [delivery(7, 10_000, False) for _ in range(args.clients)]
            size = len(bodies[0])
            before = peak_mb(server.pid)
            threads = [threading.Thread(target=post, args=(port, b)) for b in bodies]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.monotonic() - started
            peak = peak_mb(server.pid)
            limit = budget / 2**20 + 100
            print(f"{args.clients} clients at once, each {size / 1e6:.1f} MB (7 finansbilag of 10,000 posteringer), all accepted in {took:.1f} s")
            print(f"  server peak resident memory {peak:7.1f} MB (before: {before:.1f} MB); budget {budget / 2**20:.0f} MB + 100 MB = {limit:.0f} MB: "
                  f"{'within' if peak <= limit else 'OVER'}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
