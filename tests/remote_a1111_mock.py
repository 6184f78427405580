#!/usr/bin/env python3
"""remote_a1111_mock.py - a mock AUTOMATIC1111 API server on 127.0.0.1 for the remote-image tests.

POST /sdapi/v1/txt2img and /img2img answer {"images": [base64 PNG], "parameters": {...},
"info": "<JSON text>"} like A1111's API, after "sampling" for steps x 0.25 s, during which GET
/sdapi/v1/progress reports the step; POST /sdapi/v1/interrupt ends a running job. The PNG is a
solid colour of the request's size (from the seed) with A1111's "parameters" chunk. Words in the
prompt pick odd answers: "noinfo" a PNG without the chunk (the infotext only in "info"),
"crash" HTTP 500 with A1111's error object, "garbage" an image that is not a PNG, "slow" 120
steps. Every request is logged to --log as one JSON line; img2img's source is logged by its
sha256 and size.
"""
import argparse
import base64
import hashlib
import json
import os
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STEP_S = 0.25


def png(w, h, rgb, text=None):
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    raw = b"".join(b"\0" + bytes(rgb) * w for _ in range(h))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    if text is not None:
        out += chunk(b"tEXt", b"parameters\0" + text.encode("latin-1"))
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def log(self, **kw):
        with self.server.lock:
            with open(self.server.log_path, "a") as f:
                f.write(json.dumps(kw) + "\n")

    def send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # a cancelled client
            self.log(event="disconnected", path=self.path)

    def do_GET(self):
        if self.path.startswith("/sdapi/v1/progress"):
            job = self.server.job
            if job:
                step = min(job["steps"], int((time.time() - job["t0"]) / STEP_S))
                self.send(200, {"progress": step / job["steps"], "eta_relative":
                                (job["steps"] - step) * STEP_S,
                                "state": {"sampling_step": step, "sampling_steps": job["steps"],
                                          "job_count": 1}, "current_image": None})
            else:
                self.send(200, {"progress": 0, "eta_relative": 0,
                                "state": {"sampling_step": 0, "sampling_steps": 0}})
            self.log(path="/sdapi/v1/progress", busy=bool(job))
            return
        self.send(404, {"detail": "Not Found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            self.send(422, {"detail": "bad JSON"})
            return
        if self.path == "/sdapi/v1/interrupt":
            self.server.interrupted.set()
            self.log(path=self.path)
            self.send(200, {})
            return
        if self.path not in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"):
            self.send(404, {"detail": "Not Found"})
            return
        logged = {k: v for k, v in req.items() if k != "init_images"}
        if "init_images" in req:
            src = base64.b64decode(req["init_images"][0])
            logged["init_sha256"] = hashlib.sha256(src).hexdigest()
            logged["init_bytes"] = len(src)
        self.log(path=self.path, auth=self.headers.get("Authorization"), body=logged)
        prompt = req.get("prompt", "")
        if "crash" in prompt:
            self.send(500, {"error": "OutOfMemoryError", "detail": "CUDA out of memory",
                            "body": "", "errors": ""})
            return
        steps = 120 if "slow" in prompt else int(req.get("steps", 20))
        self.server.interrupted.clear()
        self.server.job = {"t0": time.time(), "steps": steps}
        end = time.time() + steps * STEP_S
        while time.time() < end and not self.server.interrupted.is_set():
            time.sleep(0.02)
        self.server.job = None
        w, h, seed = int(req.get("width", 512)), int(req.get("height", 512)), int(req["seed"])
        infotext = ("%s\nNegative prompt: %s\nSteps: %d, Sampler: %s, CFG scale: %g, Seed: %d, "
                    "Size: %dx%d, Model: mock" % (prompt, req.get("negative_prompt", ""), steps,
                                                  req.get("sampler_name", ""),
                                                  req.get("cfg_scale", 7), seed, w, h))
        rgb = (seed % 251, seed * 7 % 251, seed * 13 % 251)
        image = png(w, h, rgb, None if "noinfo" in prompt else infotext)
        if "garbage" in prompt:
            image = b"this is not a PNG"
        info = {"prompt": prompt, "seed": seed, "steps": steps, "width": w, "height": h,
                "sd_model_name": "mock-v1-5", "infotexts": [infotext]}
        self.send(200, {"images": [base64.b64encode(image).decode()], "parameters": req,
                        "info": json.dumps(info)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.log_path = a.log
    srv.lock = threading.Lock()
    srv.job = None
    srv.interrupted = threading.Event()
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
