#!/usr/bin/env python3
"""remote_mock.py - a mock OpenAI-compatible server on 127.0.0.1 for the remote-engine tests.

The model name in a request picks the behaviour (the test passes it with --remote-model):
  chunky  the answer streamed as server-sent events in odd pieces: CRLF and LF line ends, a
          comment, pieces cut inside UTF-8 characters and inside the "data:" field, then [DONE]
  plain   one JSON object, no stream (a server or proxy that does not stream)
  echo    streams the request body it got back as the answer (the test checks the fields)
  slow    a piece every 0.1 s for a minute; logs "disconnected" when the client goes away
  stall   one piece, then silence for 30 s
  err500  HTTP 500 with a plain-text body
  midfail one piece, then an {"error": ...} event (a server failing mid-stream)
  drop    one piece, then the connection closes (no finish_reason, no [DONE])
  tools   a request carrying "tools" whose last message is not a tool result gets some text and
          a streamed read_file call ({"path": "note.txt"}), name and arguments cut across
          events; a request ending in tool results gets a text answer quoting the first result
          ("The tool said: ...") when its tool_call_id matches the id of the assistant call
          before it, else "tool_call_id mismatch"; a request without "tools": "no tools sent";
          a user message with "broken" gets a call whose arguments are not JSON ({"path": oops)
GET /v1/models lists these names, chunky first (--models A,B: only those); while the file
--models-fail names exists it answers HTTP 503 instead (a server failing to list). With --key K every request needs
"Authorization: Bearer K" (else HTTP 401 with OpenAI's error object). Every request is logged
to --log as one JSON line (path, model, the Authorization header, the body's keys).
The server writes its port to --port-file once it listens (--port 0: any free port).
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "Hello, w\u00f6rld! \u2713 done."
MODELS = ["chunky", "plain", "echo", "slow", "stall", "err500", "midfail", "drop", "tools"]


def tool_chunk(index, fn, call_id=None):
    tc = {"index": index, "function": fn}
    if call_id:
        tc.update({"id": call_id, "type": "function"})
    return {"object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"tool_calls": [tc]}, "finish_reason": None}]}


def tools_answer(req):
    """The events of the "tools" model's answer to req (see the module's doc)."""
    msgs = req.get("messages") or []
    if not req.get("tools"):
        return [chunk("no tools sent", True)]
    if msgs and msgs[-1].get("role") == "tool":
        res = [m for m in msgs if m.get("role") == "tool"][-1]
        calls = [m for m in msgs if m.get("tool_calls")]
        ids = [c.get("id") for c in calls[-1]["tool_calls"]] if calls else []
        if res.get("tool_call_id") not in ids:
            return [chunk("tool_call_id mismatch", True)]
        return [chunk("The tool said: ", True), chunk(res.get("content") or "", True)]
    if msgs and "broken" in (msgs[-1].get("content") or ""):
        return [chunk("Trying.", True),
                tool_chunk(0, {"name": "read_file", "arguments": "{\"path\": oops"}, "c1")]
    return [chunk("Reading it.", True),
            tool_chunk(0, {"name": "read_", "arguments": ""}, "call_Xy12"),
            tool_chunk(0, {"name": "file", "arguments": "{\"pa"}),
            tool_chunk(0, {"arguments": "th\": \"note"}),
            tool_chunk(0, {"arguments": ".txt\"}"})]


def chunk(text, chat):
    if chat:
        return {"object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return {"object": "text_completion", "choices": [{"index": 0, "text": text,
                                                      "finish_reason": None}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the answer ends when the connection closes

    def log_message(self, fmt, *args):
        pass

    def log(self, **kw):
        with self.server.log_lock:
            with open(self.server.log_path, "a") as f:
                f.write(json.dumps(kw) + "\n")

    def send(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        want = self.server.key
        got = self.headers.get("Authorization")
        if want and got != "Bearer " + want:
            self.send(401, json.dumps({"error": {"message": "Invalid API key",
                                                 "type": "invalid_request_error"}}))
            return False
        return True

    def do_GET(self):
        self.log(path=self.path, auth=self.headers.get("Authorization"))
        if not self.authorized():
            return
        if self.path.rstrip("/") == "/v1/models":
            fail = self.server.models_fail
            if fail and os.path.exists(fail):
                self.send(503, json.dumps({"error": {"message": "model registry unavailable"}}))
                return
            # vLLM states each model's context length as max_model_len
            self.send(200, json.dumps({"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "mock", "max_model_len": 4096 + i}
                for i, m in enumerate(self.server.models)]}))
        else:
            self.send(404, json.dumps({"error": {"message": "no route " + self.path}}))

    def raw(self, b):
        self.wfile.write(b)
        self.wfile.flush()
        time.sleep(0.002)  # separate TCP segments: the client sees these pieces

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        try:
            req = json.loads(body)
        except ValueError:
            req = {}
        chat = self.path.endswith("/chat/completions")
        model = req.get("model", "")
        self.log(path=self.path, model=model, auth=self.headers.get("Authorization"),
                 keys=sorted(req.keys()) if isinstance(req, dict) else [], body=req)
        if not self.authorized():
            return
        if not (chat or self.path.endswith("/completions")):
            self.send(404, json.dumps({"error": {"message": "no route " + self.path}}))
            return
        if model == "err500":
            self.send(500, "upstream model crashed\n(worker 3)", "text/plain")
            return
        if model == "plain":
            msg = {"role": "assistant", "content": ANSWER}
            c = {"index": 0, "finish_reason": "stop"}
            c.update({"message": msg} if chat else {"text": ANSWER})
            self.send(200, json.dumps({"object": "chat.completion", "choices": [c],
                                       "usage": {"prompt_tokens": 5, "completion_tokens": 7}}))
            return
        self.start_stream()
        try:
            if model == "echo":
                text = json.dumps(req, sort_keys=True)
                self.raw(b"data: " + json.dumps(chunk(text, chat)).encode() + b"\n\n")
            elif model == "slow":
                for i in range(600):
                    self.raw(b"data: " + json.dumps(chunk("tick%d " % i, chat)).encode() +
                             b"\n\n")
                    time.sleep(0.1)
            elif model == "stall":
                self.raw(b"data: " + json.dumps(chunk("wait", chat)).encode() + b"\n\n")
                time.sleep(30)
                return
            elif model == "drop":
                self.raw(b"data: " + json.dumps(chunk("cut ", chat)).encode() + b"\n\n")
                return  # the connection closes: no finish_reason, no [DONE]
            elif model == "tools":
                for ev in tools_answer(req):
                    self.raw(b"data: " + json.dumps(ev).encode() + b"\n\n")
                self.raw(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {},
                                                              "finish_reason": "tool_calls"}]})
                         .encode() + b"\n\n")
            elif model == "midfail":
                self.raw(b"data: " + json.dumps(chunk("partial ", chat)).encode() + b"\n\n")
                self.raw(b'data: {"error": {"message": "out of KV cache slots", '
                         b'"code": 503}}\n\n')
            else:  # chunky
                self.raw(b": keep-alive\r\n\r\n")
                pieces = ["Hel", "lo, w\u00f6", "rld! \u2713", " done."]
                for i, p in enumerate(pieces):
                    ev = b"data: " + json.dumps(chunk(p, chat), ensure_ascii=False).encode()
                    ev += b"\r\n\r\n" if i % 2 else b"\n\n"
                    # cut inside the "data:" name, inside the JSON and inside a UTF-8 character
                    cuts = sorted({2, len(ev) // 2, len(ev) - 3})
                    last = 0
                    for c in cuts + [len(ev)]:
                        self.raw(ev[last:c])
                        last = c
                usage = {"object": "chat.completion.chunk", "choices": [],
                         "usage": {"prompt_tokens": 9, "completion_tokens": 6}}
                self.raw(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {},
                                                              "finish_reason": "stop"}]}).encode()
                         + b"\n\ndata: " + json.dumps(usage).encode() + b"\n\n")
            self.raw(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            self.log(event="disconnected", model=model, t=time.time())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--key", default="")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--models-fail", default="")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.key = a.key
    srv.models = a.models.split(",")
    srv.models_fail = a.models_fail
    srv.log_path = a.log
    srv.log_lock = threading.Lock()
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
