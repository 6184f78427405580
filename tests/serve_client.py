#!/usr/bin/env python3
"""serve_client.py - the HTTP side of tests/serve.sh, serve_sd.sh and bench/serve_load.sh:
requests to a running `mixel serve` on 127.0.0.1 (http.client and raw sockets, no third-party
packages), each check printing what it compared and exiting 1 on the first mismatch.

  serve_client.py PORT CHECK [ARGS...]
"""
import base64
import http.client
import json
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def request(port, method, path, body=None, headers=None, timeout=60):
    """One request; returns (status, headers dict, body bytes)."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    hd = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hd, out


def stream(port, path, body, headers=None):
    """A streamed request: returns (status, list of parsed data events, saw [DONE], raw)."""
    c = http.client.HTTPConnection(HOST, port, timeout=60)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body=json.dumps(body).encode(), headers=h)
    r = c.getresponse()
    raw = r.read().decode("utf-8")
    c.close()
    events, done = [], False
    if r.status != 200:
        return r.status, events, done, raw
    if r.getheader("Content-Type") != "text/event-stream":
        fail("stream Content-Type is %r" % r.getheader("Content-Type"))
    for block in raw.split("\n\n"):
        if not block:
            continue
        if not block.startswith("data: "):
            fail("stream block does not start with 'data: ': %r" % block[:80])
        payload = block[6:]
        if payload == "[DONE]":
            done = True
            continue
        if done:
            fail("data after [DONE]")
        events.append(json.loads(payload))
    return r.status, events, done, raw


def expect_error(status, body, want_status, want_in=None, want_code=None):
    if status != want_status:
        fail("status %d, expected %d (%s)" % (status, want_status, body[:200]))
    e = json.loads(body)["error"]
    for k in ("message", "type", "code"):
        if k not in e:
            fail("error object lacks %r: %s" % (k, body))
    if want_in and want_in not in e["message"]:
        fail("error message %r lacks %r" % (e["message"], want_in))
    if want_code and e["code"] != want_code:
        fail("error code %r, expected %r" % (e["code"], want_code))


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def check_basics(port, model_id):
    s, _, b = request(port, "GET", "/health")
    if s != 200 or json.loads(b) != {"status": "ok"}:
        fail("/health: %d %r" % (s, b))
    s, _, b = request(port, "GET", "/v1/models")
    m = json.loads(b)
    if s != 200 or m["object"] != "list" or [d["id"] for d in m["data"]] != [model_id]:
        fail("/v1/models: %d %r" % (s, b))
    if m["data"][0]["object"] != "model":
        fail("/v1/models entry: %r" % m["data"][0])
    s, _, b = request(port, "GET", "/nope")
    expect_error(s, b, 404)
    print("ok: /health, /v1/models (%s), 404" % model_id)


def check_completion(port, prompt, seed, n, expected_file, stream_too=True):
    """Non-streamed and streamed /v1/completions equal `mixel run`'s text."""
    want = read_text(expected_file)
    body = {"model": None, "prompt": prompt, "seed": seed, "max_tokens": n}
    s, _, b = request(port, "POST", "/v1/completions", body)
    if s != 200:
        fail("/v1/completions: %d %s" % (s, b[:300]))
    r = json.loads(b)
    got = r["choices"][0]["text"]
    if r["object"] != "text_completion" or not r["id"].startswith("cmpl-"):
        fail("completion object/id: %r" % r)
    if got != want:
        fail("completion %r != mixel run %r" % (got, want))
    u = r["usage"]
    if u["completion_tokens"] != n or u["total_tokens"] != u["prompt_tokens"] + n:
        fail("usage %r (max_tokens %d)" % (u, n))
    if r["choices"][0]["finish_reason"] != "length":
        fail("finish_reason %r" % r["choices"][0]["finish_reason"])
    print("ok: /v1/completions = mixel run (%d tokens, %d bytes)" % (n, len(got)))
    if not stream_too:
        return
    body["stream"] = True
    s, ev, done, raw = stream(port, "/v1/completions", body)
    if s != 200 or not done:
        fail("streamed completion: %d done=%s %s" % (s, done, raw[:300]))
    text = "".join(e["choices"][0]["text"] for e in ev)
    if text != want:
        fail("streamed completion %r != mixel run %r" % (text, want))
    last = ev[-1]
    if last["choices"][0]["finish_reason"] != "length" or last["usage"]["completion_tokens"] != n:
        fail("last chunk %r" % last)
    if any(e["object"] != "text_completion" for e in ev) or len({e["id"] for e in ev}) != 1:
        fail("chunk objects/ids differ")
    print("ok: streamed /v1/completions = mixel run (%d chunks, then [DONE])" % len(ev))


def check_chat(port, prompt, seed, n, expected_file, model_id):
    """Chat completions (one user message) equal `mixel run --session` (same template)."""
    want = read_text(expected_file)
    if want.endswith("\n"):
        want = want[:-1]  # run --session ends its answer with a newline
    body = {"model": model_id, "messages": [{"role": "user", "content": prompt}],
            "seed": seed, "max_tokens": n}
    s, _, b = request(port, "POST", "/v1/chat/completions", body)
    if s != 200:
        fail("/v1/chat/completions: %d %s" % (s, b[:300]))
    r = json.loads(b)
    msg = r["choices"][0]["message"]
    if r["object"] != "chat.completion" or msg["role"] != "assistant":
        fail("chat object: %r" % r)
    if msg["content"] != want:
        fail("chat %r != mixel run --session %r" % (msg["content"], want))
    print("ok: /v1/chat/completions = mixel run --session (%d bytes)" % len(want))
    body["stream"] = True
    s, ev, done, raw = stream(port, "/v1/chat/completions", body)
    if s != 200 or not done:
        fail("streamed chat: %d %s" % (s, raw[:300]))
    if ev[0]["choices"][0]["delta"] != {"role": "assistant", "content": ""}:
        fail("first chunk %r" % ev[0])
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in ev)
    if text != want:
        fail("streamed chat %r != %r" % (text, want))
    last = ev[-1]
    if last["choices"][0]["delta"] != {} or last["choices"][0]["finish_reason"] is None \
            or "usage" not in last:
        fail("last chat chunk %r" % last)
    if any(e["object"] != "chat.completion.chunk" for e in ev):
        fail("chunk object")
    print("ok: streamed chat = mixel run --session (%d chunks, usage %r)" % (len(ev), last["usage"]))


def check_errors(port):
    s, _, b = request(port, "POST", "/v1/chat/completions", b'{"messages": [')
    expect_error(s, b, 400, "not valid JSON")
    s, _, b = request(port, "POST", "/v1/chat/completions",
                      {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})
    expect_error(s, b, 400, "temperature")
    s, _, b = request(port, "POST", "/v1/chat/completions", {"messages": "hi"})
    expect_error(s, b, 400, "messages")
    s, _, b = request(port, "POST", "/v1/chat/completions",
                      {"messages": [{"role": "wizard", "content": "x"}]})
    expect_error(s, b, 400, "role")
    s, _, b = request(port, "POST", "/v1/chat/completions",
                      {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})
    expect_error(s, b, 400, "gpt-9", "model_not_found")
    s, _, b = request(port, "POST", "/v1/chat/completions",
                      {"n": 2, "messages": [{"role": "user", "content": "x"}]})
    expect_error(s, b, 400, "n:")
    s, _, b = request(port, "POST", "/v1/chat/completions",
                      {"response_format": {"type": "yaml"},
                       "messages": [{"role": "user", "content": "x"}]})
    expect_error(s, b, 400, "response_format")
    s, _, b = request(port, "POST", "/v1/completions", {"prompt": 5})
    expect_error(s, b, 400, "prompt")
    s, _, b = request(port, "POST", "/v1/completions", b'[1,2]')
    expect_error(s, b, 400, "object")
    s, _, b = request(port, "DELETE", "/v1/models")
    expect_error(s, b, 405)
    print("ok: malformed JSON, wrong types, unknown role and model, n=2, response_format -> 400")


def check_too_big(port, limit):
    body = b'{"prompt": "' + b"a" * (limit + 10) + b'"}'
    s, _, b = request(port, "POST", "/v1/completions", body)
    expect_error(s, b, 413, None, "request_too_large")
    # chunked: no Content-Length, the limit is found while reading
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    c.putrequest("POST", "/v1/completions")
    c.putheader("Transfer-Encoding", "chunked")
    c.putheader("Content-Type", "application/json")
    c.endheaders()
    for _ in range(4):
        piece = b"a" * (limit // 2)
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    expect_error(r.status, r.read(), 413)
    c.close()
    # headers past the connection's memory: refused by libmicrohttpd, nothing crashes
    hs, _, b = request(port, "GET", "/health", headers={"X-Big": "b" * 200000})
    if hs not in (413, 431):
        fail("200 KB of headers: status %d" % hs)
    s, _, _ = request(port, "GET", "/health")
    if s != 200:
        fail("server not healthy after oversized requests")
    print("ok: oversized body (Content-Length and chunked) -> 413, huge headers -> %d" % hs)


def check_key(port, key):
    body = {"prompt": "a", "max_tokens": 2}
    s, _, b = request(port, "POST", "/v1/completions", body)
    expect_error(s, b, 401, "API key", "invalid_api_key")
    s, _, b = request(port, "POST", "/v1/completions", body,
                      {"Authorization": "Bearer " + key + "x"})
    expect_error(s, b, 401, "invalid", "invalid_api_key")
    s, _, b = request(port, "GET", "/v1/models", None, {"Authorization": "Bearer wrong"})
    expect_error(s, b, 401)
    s, _, b = request(port, "POST", "/v1/completions", body, {"Authorization": "Bearer " + key})
    if s != 200:
        fail("right key: %d %s" % (s, b))
    s, _, _ = request(port, "GET", "/health")
    if s != 200:
        fail("/health needs no key, got %d" % s)
    print("ok: missing and wrong key -> 401, right key -> 200, /health open")


def open_stream(port, body):
    """Sends a streamed request on a raw socket and reads until the first content chunk."""
    sk = socket.create_connection((HOST, port), timeout=30)
    data = json.dumps(body).encode()
    sk.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
               b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
    got = b""
    while got.count(b"data: ") < 2:
        k = sk.recv(65536)
        if not k:
            fail("stream closed before its first chunk: %r" % got[:300])
        got += k
    return sk


def check_cancel(port, long_n):
    """A client that disconnects cancels its generation: the next request is answered at once."""
    long_body = {"messages": [{"role": "user", "content": "go on"}], "max_tokens": long_n,
                 "stream": True, "seed": 1}
    t0 = time.time()
    sk = open_stream(port, long_body)
    sk.close()
    s, _, b = request(port, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 4},
                      timeout=30)
    dt = time.time() - t0
    if s != 200:
        fail("request after a disconnect: %d %s" % (s, b))
    if dt > 4:
        fail("request after a disconnect took %.1f s (the long answer was not cancelled)" % dt)
    # the same for a whole-body request whose client leaves while it runs
    sk = socket.create_connection((HOST, port), timeout=30)
    data = json.dumps(dict(long_body, stream=False)).encode()
    sk.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
               % (len(data), data))
    time.sleep(0.5)
    t0 = time.time()
    sk.close()
    s, _, b = request(port, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 4},
                      timeout=30)
    dt = time.time() - t0
    if s != 200 or dt > 4:
        fail("after a non-streamed disconnect: %d in %.1f s" % (s, dt))
    print("ok: disconnect cancels (streamed and not); next answers in %.2f s" % dt)


def check_concurrent(port, n):
    """n clients at once, different seeds: all answered, each as when asked alone."""
    alone = {}
    for i in range(n):
        s, _, b = request(port, "POST", "/v1/completions",
                          {"prompt": "Once", "seed": 100 + i, "max_tokens": 12})
        alone[i] = json.loads(b)["choices"][0]["text"]
    results, errors = {}, []

    def one(i):
        try:
            st = i % 2 == 1
            body = {"prompt": "Once", "seed": 100 + i, "max_tokens": 12, "stream": st}
            if st:
                s, ev, done, raw = stream(port, "/v1/completions", body)
                results[i] = (s, "".join(e["choices"][0]["text"] for e in ev))
            else:
                s, _, b = request(port, "POST", "/v1/completions", body)
                results[i] = (s, json.loads(b)["choices"][0]["text"] if s == 200 else b)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
    th = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    if errors:
        fail("concurrent clients: %s" % errors)
    for i in range(n):
        if results[i][0] != 200 or results[i][1] != alone[i]:
            fail("client %d: %r, alone %r" % (i, results[i], alone[i]))
    print("ok: %d concurrent clients (half streaming) all answered, each as alone" % n)


def check_overflow(port, long_n):
    """--queue 1: one running, one waiting, the third gets 503 with Retry-After."""
    body = {"messages": [{"role": "user", "content": "go"}], "max_tokens": long_n,
            "stream": True, "seed": 3}
    a = open_stream(port, body)  # running
    b = socket.create_connection((HOST, port), timeout=30)  # queued
    data = json.dumps(body).encode()
    b.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
              % (len(data), data))
    time.sleep(0.3)
    s, h, out = request(port, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 2})
    expect_error(s, out, 503, "busy", "queue_full")
    if h.get("retry-after") != "1":
        fail("503 without Retry-After: %r" % h)
    # a waiting client that leaves frees its place: the next one is queued (200 and a stream)
    b.close()
    t0 = time.time()
    while True:
        c = socket.create_connection((HOST, port), timeout=30)
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                  b"\r\n%s" % (len(data), data))
        head = c.recv(12)
        if head.startswith(b"HTTP/1.1 200") or time.time() - t0 > 3:
            break
        c.close()
        time.sleep(0.05)
    if not head.startswith(b"HTTP/1.1 200"):
        fail("a left client's queue place was not freed: %r" % head)
    a.close()
    c.close()
    t0 = time.time()
    while True:  # as a client honouring Retry-After would (the cancels take a poll or two)
        s, _, out = request(port, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 2})
        if s != 503 or time.time() - t0 > 4:
            break
        time.sleep(0.05)
    if s != 200 or time.time() - t0 > 4:
        fail("after the queue emptied: %d in %.1f s" % (s, time.time() - t0))
    print("ok: queue full -> 503 with Retry-After; a waiting client that leaves frees its place; "
          "cancelled queue drains")


def check_txt2img(port, prompt, seed, steps, w, h, expected_png):
    body = {"prompt": prompt, "negative_prompt": "", "seed": seed, "steps": steps, "width": w,
            "height": h, "cfg_scale": 7, "batch_size": 1}
    s, _, b = request(port, "POST", "/sdapi/v1/txt2img", body, timeout=300)
    if s != 200:
        fail("txt2img: %d %s" % (s, b[:300]))
    r = json.loads(b)
    png = base64.b64decode(r["images"][0])
    with open(expected_png, "rb") as f:
        want = f.read()
    if png != want:
        fail("txt2img PNG (%d bytes) differs from mixel image's (%d bytes)"
             % (len(png), len(want)))
    info = json.loads(r["info"])
    if info["seed"] != seed or info["all_seeds"] != [seed] or "Steps: %d" % steps \
            not in info["infotexts"][0] or r["parameters"]["prompt"] != prompt:
        fail("txt2img info/parameters: %r %r" % (info, r["parameters"]))
    s, _, b = request(port, "GET", "/sdapi/v1/progress")
    p = json.loads(b)
    if s != 200 or p["progress"] != 0 or "state" not in p:
        fail("idle progress: %d %r" % (s, b))
    # progress while an image of more steps runs: some report in (0, 1] naming those steps
    seen, busy = [], [True]

    def watch():
        while busy[0]:
            _, _, pb = request(port, "GET", "/sdapi/v1/progress")
            pj = json.loads(pb)
            if pj["state"]["sampling_steps"] == 8 and 0 < pj["progress"] <= 1:
                seen.append(pj["progress"])
            time.sleep(0.005)
    th = threading.Thread(target=watch)
    th.start()
    s, _, b = request(port, "POST", "/sdapi/v1/txt2img", dict(body, steps=8), timeout=300)
    busy[0] = False
    th.join()
    if s != 200 or not seen:
        fail("no progress seen during an 8-step image (%d)" % s)
    s, _, b = request(port, "POST", "/sdapi/v1/txt2img", {"steps": "many"})
    expect_error(s, b, 400, "steps")
    print("ok: txt2img %dx%d = mixel image byte for byte (%d bytes PNG), progress %s, 400" %
          (w, h, len(png), sorted(set(seen))))


def check_json_schema(port):
    """response_format json_schema / json_object: with an untrained model at temperature 1, every
    answer (streamed or not) parses as JSON and validates against the schema."""
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12},
        "size": {"enum": ["small", "large"]},
        "n": {"type": "integer", "minimum": -5, "maximum": 40},
        "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
        "required": ["name", "size", "n"], "additionalProperties": False}
    for seed in (1, 2, 3):
        for fmt in ({"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
                    {"type": "json_object"}):
            body = {"messages": [{"role": "user", "content": "Describe a box."}],
                    "temperature": 1, "seed": seed, "max_tokens": 600, "response_format": fmt}
            s, _, b = request(port, "POST", "/v1/chat/completions", body)
            if s != 200:
                fail("response_format: HTTP %d %s" % (s, b[:200]))
            text = json.loads(b)["choices"][0]["message"]["content"]
            st, events, done, _ = stream(port, "/v1/chat/completions", dict(body, stream=True))
            streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events
                               if e.get("choices"))
            if st != 200 or not done or streamed != text:
                fail("response_format: streamed answer differs: %r vs %r" % (streamed, text))
            try:
                v = json.loads(text)
            except ValueError:
                fail("response_format %s seed %d: not JSON: %r" % (fmt["type"], seed, text))
            if not isinstance(v, dict):
                fail("response_format: not an object: %r" % text)
            if fmt["type"] == "json_schema":
                if jsonschema:
                    jsonschema.validate(v, schema)
                elif set(v) - set(schema["properties"]) or v["size"] not in ("small", "large"):
                    fail("response_format: does not follow the schema: %r" % text)
    bad = {"messages": [{"role": "user", "content": "x"}],
           "response_format": {"type": "json_schema", "json_schema": {"schema": {"not": {}}}}}
    s, _, b = request(port, "POST", "/v1/chat/completions", bad)
    expect_error(s, b, 400, "'not'")
    print("ok: response_format json_schema / json_object: 12 answers are valid JSON%s" %
          (" (jsonschema-validated)" if jsonschema else ""))


def main():
    port = int(sys.argv[1])
    check = sys.argv[2]
    a = sys.argv[3:]
    if check == "basics":
        check_basics(port, a[0])
    elif check == "completion":
        check_completion(port, a[0], int(a[1]), int(a[2]), a[3], len(a) < 5)
    elif check == "chat":
        check_chat(port, a[0], int(a[1]), int(a[2]), a[3], a[4])
    elif check == "errors":
        check_errors(port)
    elif check == "too_big":
        check_too_big(port, int(a[0]))
    elif check == "key":
        check_key(port, a[0])
    elif check == "cancel":
        check_cancel(port, int(a[0]))
    elif check == "concurrent":
        check_concurrent(port, int(a[0]))
    elif check == "overflow":
        check_overflow(port, int(a[0]))
    elif check == "json_schema":
        check_json_schema(port)
    elif check == "txt2img":
        check_txt2img(port, a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4]), a[5])
    else:
        fail("unknown check " + check)


if __name__ == "__main__":
    main()
