#!/usr/bin/env python3
"""sipterm vs baresip, side by side (`make bench`). Python 3 standard library only.

For each client: one Opus call of --seconds (30) to the same peer, a sipp UAS that answers with
Opus (bench/uas_opus_echo.xml) and echoes the client's RTP back (-rtp_echo). Everything on
127.0.0.1 with free ports.

Measured per client:
  * CPU seconds: utime + stime from /proc/PID/stat at the end of the call (start-up included).
  * Peak RSS: VmHWM from /proc/PID/status at the end of the call.
  * Round-trip audio latency: the input WAV carries a chirp ("click") every CLICK_EVERY s over
    a quiet tone; the echoed audio the client plays out is recorded, each click is found in it
    by cross-correlation, and the median offset (recording time - input time) is reported.
    sipterm: --audio-in / --audio-out WAV files, both advanced by the same 20 ms media clock
    from the start of the media session, so an offset in the file is a delay in time.
    baresip: aufile source, no audio player module (1.0's alsa player on `null` does not block
    and spins a core; no other 1.0 player is paced without a sound card). The sndfile module
    dumps frames as they are encoded (enc.wav) and packets as they are decoded after the jitter
    buffer (dec.wav); latency = click offset between the two dumps + the wall-clock gap between
    their first samples (polled every 1 ms). Source and playout buffers are left out: a lower
    bound for baresip.
  The floor is ptime + Opus's look-ahead = 26.5 ms: one frame is gathered before it is sent,
  and the decoder's output lags its input by 6.5 ms. sipterm's playout follows the packets'
  arrival, so a packet plays at the next frame of the output file.

Usage: bench/bench.py [--sipterm PATH] [--seconds N] [--out bench/results.md] [--keep]
"""

import argparse
import datetime
import json
import math
import os
import queue
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave

RATE = 48000
FRAME_MS = 20
PACKETISATION_FLOOR_MS = FRAME_MS + 6.5
CLICK_FIRST = 2.0  # s
CLICK_EVERY = 2.0  # s
CHIRP_MS = 10
CHIRP_AMPLITUDE = 16000
BACKGROUND_HZ = 440.0
BACKGROUND_AMPLITUDE = 1500
SEARCH_MS = 600  # how late after its input time a click may come back
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def log(*args):
    print("[bench]", *args, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ ports ----


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_even_port_block(count=4):
    """An even port P with P..P+count-1 free on UDP 127.0.0.1 (sipp -rtp_echo binds P and P+2)."""
    for _ in range(200):
        base = free_udp_port() & ~1
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of UDP ports")


def udp_port_bound(port):
    """True when something listens on UDP 127.0.0.1:port or 0.0.0.0:port (from /proc/net/udp)."""
    want = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            if line.split()[1] in want:
                return True
    return False


def wait_until(what, predicate, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


# ------------------------------------------------------------------- /proc ----


def proc_usage(pid):
    """(CPU seconds utime+stime, peak RSS in MB = VmHWM)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields after "(comm)": state is field 3, utime 14, stime 15 (1-based) -> index 11, 12.
    ticks = int(fields[11]) + int(fields[12])
    cpu = ticks / os.sysconf("SC_CLK_TCK")
    hwm_kb = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm_kb = int(line.split()[1])
    return cpu, hwm_kb / 1024.0


# -------------------------------------------------------------------- audio ----


def chirp():
    """A CHIRP_MS linear chirp 1 -> 8 kHz with a Hann window."""
    n = RATE * CHIRP_MS // 1000
    f0, f1, dur = 1000.0, 8000.0, n / RATE
    out = []
    for i in range(n):
        t = i / RATE
        phase = 2 * math.pi * (f0 * t + (f1 - f0) * t * t / (2 * dur))
        window = 0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1))
        out.append(int(CHIRP_AMPLITUDE * window * math.sin(phase)))
    return out


def click_times(seconds):
    times, t = [], CLICK_FIRST
    while t < seconds - 1.0:
        times.append(t)
        t += CLICK_EVERY
    return times


def make_input(seconds):
    """Mono samples: a quiet tone with a chirp at each click time."""
    n = int(seconds * RATE)
    w = 2 * math.pi * BACKGROUND_HZ / RATE
    samples = [int(BACKGROUND_AMPLITUDE * math.sin(w * i)) for i in range(n)]
    c = chirp()
    for t in click_times(seconds):
        start = int(t * RATE)
        for i, v in enumerate(c):
            samples[start + i] = max(-32768, min(32767, samples[start + i] + v))
    return samples


def write_wav(path, mono, channels):
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(RATE)
        if channels == 1:
            data = struct.pack(f"<{len(mono)}h", *mono)
        else:
            data = struct.pack(f"<{2 * len(mono)}h", *(v for s in mono for v in (s, s)))
        w.writeframes(data)


def first_channel(data, channels):
    samples = struct.unpack(f"<{len(data) // 2}h", data[: len(data) // 2 * 2])
    return list(samples[::channels]) if channels > 1 else list(samples)


def read_wav(path):
    """(first channel samples, rate)."""
    with wave.open(path, "rb") as w:
        channels, rate = w.getnchannels(), w.getframerate()
        return first_channel(w.readframes(w.getnframes()), channels), rate


def highpass(x):
    """First-order difference: removes the 440 Hz background's weight against the 1-8 kHz chirp."""
    return [b - a for a, b in zip(x, x[1:])]


def find_clicks(recorded, rate, seconds, search_from_ms=0):
    """Offset in ms of each click found in `recorded` relative to its input time, searched from
    `search_from_ms` to SEARCH_MS (None: not found)."""
    if rate != RATE:
        raise RuntimeError(f"recording at {rate} Hz, expected {RATE}")
    template = highpass(chirp())
    t_energy = math.sqrt(sum(v * v for v in template))
    hp = highpass(recorded)
    n = len(template)
    offsets = []
    for t in click_times(seconds):
        at = int(t * RATE)
        start = max(0, at + search_from_ms * RATE // 1000)
        end = min(len(hp) - n, at + SEARCH_MS * RATE // 1000)
        if end <= start:
            offsets.append(None)
            continue
        # Coarse: the 1 ms block with the most high-passed energy, then exact cross-correlation
        # within +-3 ms of it.
        block = RATE // 1000
        best_block, best_energy = start, -1.0
        for b in range(start, end, block):
            e = sum(v * v for v in hp[b : b + n])
            if e > best_energy:
                best_block, best_energy = b, e
        best_lag, best_corr = None, 0.0
        for lag in range(max(start, best_block - n - 3 * block), min(end, best_block + 3 * block)):
            seg = hp[lag : lag + n]
            energy = math.sqrt(sum(v * v for v in seg))
            if energy == 0:
                continue
            corr = sum(a * b for a, b in zip(template, seg)) / (t_energy * energy)
            if corr > best_corr:
                best_lag, best_corr = lag, corr
        if best_lag is None or best_corr < 0.5:
            offsets.append(None)
        else:
            offsets.append((best_lag - at) * 1000.0 / RATE)
    return offsets


# ------------------------------------------------------------------- peers ----


class Process:
    """A child with its stdout read line by line into a queue and a log file."""

    def __init__(self, name, args, cwd, env=None, stdin=True):
        self.name = name
        self.log_path = os.path.join(cwd, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.lines = queue.Queue()
        self.text = []
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            self.text.append(line)
            self.lines.put(line)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, what, predicate, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: timed out waiting for {what} (log: {self.log_path})")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before {what} (log: {self.log_path})")
                continue
            if predicate(line):
                return line

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Only the process group this script started.
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(2)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()


def start_sipp(workdir, seconds):
    port = free_udp_port()
    media = free_even_port_block()
    args = [
        "sipp", "-sf", os.path.join(HERE, "uas_opus_echo.xml"),
        "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(media), "-rtp_echo",
        "-m", "1", "-nostdin", "-timeout", f"{int(seconds) + 60}s", "-timeout_error",
        "-trace_err", "-error_file", os.path.join(workdir, "sipp-errors.log"),
        "-trace_msg", "-message_file", os.path.join(workdir, "sipp-messages.log"),
    ]
    sipp = Process("sipp", args, workdir, stdin=False)
    wait_until("sipp to listen", lambda: udp_port_bound(port), 10, sipp.proc)
    return sipp, port


def json_event(line, **want):
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if all(event.get(k) == v for k, v in want.items()):
        return event
    return None


# Voice processing forced on with WAV files (it is off with files by default): echo
# cancellation (the reference is what sipterm plays, here the sipp echo), noise suppression, gain.
PROCESSING_ON = "[audio]\necho_cancel = true\nnoise_suppression = true\nauto_gain = true\n"


def run_sipterm(binary, workdir, input_wav, seconds, audio_config=""):
    sipp, sipp_port = start_sipp(workdir, seconds)
    out_wav = os.path.join(workdir, "sipterm-out.wav")
    config = os.path.join(workdir, "sipterm.toml")
    with open(config, "w") as f:
        f.write('[log]\nlevel = "warn"\nfile = "%s"\n' % os.path.join(workdir, "sipterm-internal.log"))
        f.write(audio_config)
    env = dict(os.environ, HOME=workdir, XDG_CONFIG_HOME=workdir, XDG_STATE_HOME=workdir)
    args = [binary, "--headless", "--listen", "127.0.0.1:0", "--audio-in", input_wav,
            "--audio-out", out_wav, "--config", config]
    client = None
    try:
        client = Process("sipterm", args, workdir, env=env)
        client.expect("ready", lambda l: json_event(l, event="ready"), 10)
        client.send(f"dial sip:bench@127.0.0.1:{sipp_port}")
        client.expect("call confirmed", lambda l: json_event(l, event="call", state="confirmed"), 10)
        time.sleep(seconds)
        cpu, rss = proc_usage(client.proc.pid)
        client.send("hangup")
        client.expect("call terminated", lambda l: json_event(l, event="call", state="terminated"), 10)
        client.send("quit")
        client.stop()
    finally:
        if client is not None:
            client.stop(0.1)
        sipp.stop(10)
    if sipp.proc.returncode != 0:
        raise RuntimeError(f"sipp failed ({sipp.proc.returncode}) with sipterm; see {workdir}")
    recorded, rate = read_wav(out_wav)
    return cpu, rss, find_clicks(recorded, rate, seconds)


BARESIP_MODULES = "/usr/lib/baresip/modules"


class FirstWrites(threading.Thread):
    """Polls a directory every ms for `*-enc.wav` / `*-dec.wav` and notes the monotonic time at
    which each file first grows past the size it had when it appeared (its first audio)."""

    def __init__(self, directory):
        super().__init__(daemon=True)
        self.directory = directory
        self.seen = {}  # suffix -> (path, size when first seen)
        self.first = {}  # suffix -> time of the first growth
        self.done = threading.Event()

    def run(self):
        deadline = time.monotonic() + 30
        while not self.done.is_set() and len(self.first) < 2 and time.monotonic() < deadline:
            now = time.monotonic()
            for name in os.listdir(self.directory):
                for suffix in ("-enc.wav", "-dec.wav"):
                    if not name.endswith(suffix) or suffix in self.first:
                        continue
                    path = os.path.join(self.directory, name)
                    try:
                        size = os.stat(path).st_size
                    except OSError:
                        continue
                    if suffix not in self.seen:
                        self.seen[suffix] = (path, size)
                    elif size > self.seen[suffix][1]:
                        self.first[suffix] = now
            time.sleep(0.001)


def run_baresip(workdir, input_wav, seconds):
    """No audio player module is loaded: baresip 1.0's alsa player on the `null` device does not
    block and spins a core, and no other 1.0 player is paced without a sound card. Received audio
    is decoded as packets arrive and written by the sndfile module (dec.wav); sent audio as it is
    encoded (enc.wav)."""
    sipp, sipp_port = start_sipp(workdir, seconds)
    conf = os.path.join(workdir, "baresip")
    dumps = os.path.join(workdir, "dumps")
    port = free_udp_port()
    baresip_config(conf, dumps, port, input_wav, "manual")
    env = dict(os.environ, HOME=workdir)
    watcher = FirstWrites(dumps)
    client = None
    try:
        client = Process("baresip", ["baresip", "-f", conf], workdir, env=env)
        wait_until("baresip to listen", lambda: udp_port_bound(port), 10, client.proc)
        watcher.start()
        client.send(f"/dial sip:bench@127.0.0.1:{sipp_port}")
        client.expect("call established", lambda l: "established" in l.lower(), 10)
        time.sleep(seconds)
        cpu, rss = proc_usage(client.proc.pid)
        client.send("/hangup")
        client.expect("call terminated", lambda l: "terminated" in l.lower(), 10)
        client.send("/quit")
        client.stop()
    finally:
        watcher.done.set()
        if client is not None:
            client.stop(0.1)
        sipp.stop(10)
    if sipp.proc.returncode != 0:
        raise RuntimeError(f"sipp failed ({sipp.proc.returncode}) with baresip; see {workdir}")
    if len(watcher.first) < 2:
        raise RuntimeError(f"baresip wrote no enc/dec dumps in {dumps}")
    enc, enc_rate = read_wav(watcher.seen["-enc.wav"][0])
    dec, dec_rate = read_wav(watcher.seen["-dec.wav"][0])
    # The dumps start at different moments: enc.wav with the first encoded frame, dec.wav with
    # the first decoded packet. Offsets between them plus that start difference are delays.
    start_gap_ms = (watcher.first["-dec.wav"] - watcher.first["-enc.wav"]) * 1000.0
    in_enc = find_clicks(enc, enc_rate, seconds, search_from_ms=-SEARCH_MS)
    in_dec = find_clicks(dec, dec_rate, seconds, search_from_ms=-SEARCH_MS)
    offsets = [
        None if a is None or b is None else b - a + start_gap_ms for a, b in zip(in_enc, in_dec)
    ]
    return cpu, rss, offsets, start_gap_ms


# ------------------------------------------------------------ pair calls ----
# The CPU measure: one call between two sipterms against one between two baresips,
# CPU of both ends summed, each pair run back to back in the same invocation.


def run_sipterm_pair(binary, workdir, input_wav, seconds):
    env = dict(os.environ, HOME=workdir, XDG_CONFIG_HOME=workdir, XDG_STATE_HOME=workdir,
               XDG_DATA_HOME=workdir)
    procs = []
    try:
        for name in ("callee", "caller"):
            config = os.path.join(workdir, f"{name}.toml")
            with open(config, "w") as f:
                f.write('[log]\nlevel = "warn"\nfile = "%s"\n' % os.path.join(workdir, f"{name}-internal.log"))
            args = [binary, "--headless", "--listen", "127.0.0.1:0", "--audio-in", input_wav,
                    "--audio-out", os.path.join(workdir, f"{name}-out.wav"), "--config", config]
            if name == "callee":
                args.append("--auto-answer")
            procs.append(Process(f"sipterm-{name}", args, workdir, env=env))
        callee, caller = procs
        ready = json.loads(callee.expect("callee ready", lambda l: json_event(l, event="ready"), 10))
        caller.expect("caller ready", lambda l: json_event(l, event="ready"), 10)
        caller.send(f"dial sip:bench@{ready['listen']}")
        caller.expect("call confirmed", lambda l: json_event(l, event="call", state="confirmed"), 10)
        time.sleep(seconds)
        usage = [proc_usage(p.proc.pid) for p in procs]
        caller.send("hangup")
        caller.expect("call terminated", lambda l: json_event(l, event="call", state="terminated"), 10)
        for p in procs:
            p.send("quit")
            p.stop()
    finally:
        for p in procs:
            p.stop(0.1)
    return sum(u[0] for u in usage), [u[0] for u in usage]


def baresip_config(conf, dumps, port, input_wav, answermode):
    for d in (conf, dumps):
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(conf, "config"), "w") as f:
        f.write(
            "poll_method\t\tepoll\n"
            f"sip_listen\t\t127.0.0.1:{port}\n"
            "net_interface\t\t127.0.0.1\n"
            "call_local_timeout\t120\n"
            f"audio_source\t\taufile,{input_wav}\n"
            f"module_path\t\t{BARESIP_MODULES}\n"
            "module\t\t\tstdio.so\n"
            "module\t\t\topus.so\n"
            "module\t\t\taufile.so\n"
            "module\t\t\tsndfile.so\n"
            "module_tmp\t\tuuid.so\n"
            "module_tmp\t\taccount.so\n"
            "module_app\t\tmenu.so\n"
            f"snd_path\t\t{dumps}\n"
        )
    with open(os.path.join(conf, "accounts"), "w") as f:
        f.write(f"<sip:bench@127.0.0.1:{port}>;regint=0;answermode={answermode}\n")
    with open(os.path.join(conf, "contacts"), "w") as f:
        f.write("")


def run_baresip_pair(workdir, input_wav, seconds):
    procs = []
    ports = {}
    try:
        for name, mode in (("callee", "auto"), ("caller", "manual")):
            home = os.path.join(workdir, name)
            conf = os.path.join(home, "baresip")
            ports[name] = free_udp_port()
            baresip_config(conf, os.path.join(home, "dumps"), ports[name], input_wav, mode)
            procs.append(Process(f"baresip-{name}", ["baresip", "-f", conf], home,
                                 env=dict(os.environ, HOME=home)))
            wait_until(f"baresip {name} to listen", lambda: udp_port_bound(ports[name]), 10, procs[-1].proc)
        callee, caller = procs
        caller.send(f"/dial sip:bench@127.0.0.1:{ports['callee']}")
        caller.expect("call established", lambda l: "established" in l.lower(), 10)
        time.sleep(seconds)
        usage = [proc_usage(p.proc.pid) for p in procs]
        caller.send("/hangup")
        caller.expect("call terminated", lambda l: "terminated" in l.lower(), 10)
        for p in procs:
            p.send("/quit")
            p.stop()
    finally:
        for p in procs:
            p.stop(0.1)
    return sum(u[0] for u in usage), [u[0] for u in usage]


# ------------------------------------------------------------------- table ----


def median_ms(offsets):
    found = [o for o in offsets if o is not None]
    return (statistics.median(found), len(found), len(offsets)) if found else (None, 0, len(offsets))


def fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sipterm", default=os.path.join(ROOT, "target/release/sipterm"))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", default=os.path.join(HERE, "results.md"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--pair-only", action="store_true",
                        help="only the sipterm-sipterm and baresip-baresip calls (CPU), no file written")
    opts = parser.parse_args()
    opts.sipterm = os.path.abspath(opts.sipterm)
    for tool in ("sipp", "baresip"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (make test-deps installs it)")
    if not os.access(opts.sipterm, os.X_OK):
        sys.exit(f"{opts.sipterm} not found: cargo build --release")

    workdir = tempfile.mkdtemp(prefix="sipterm-bench-")
    load_before = os.getloadavg()
    # Input a little longer than the call: baresip's aufile hangs up when its file ends.
    total = opts.seconds + 10
    mono = make_input(total)
    sipterm_in = os.path.join(workdir, "in-mono.wav")
    baresip_in = os.path.join(workdir, "in-stereo.wav")
    write_wav(sipterm_in, mono, 1)
    write_wav(baresip_in, mono, 2)  # baresip's opus is opus/48000/2; aufile wants 2 channels

    log(f"scratch dir {workdir}; load average {load_before[0]:.2f}")
    log(f"sipterm calls sipterm: {opts.seconds:.0f} s Opus call ...")
    sp_dir = os.path.join(workdir, "sipterm-pair")
    os.makedirs(sp_dir)
    sp_cpu, sp_each = run_sipterm_pair(opts.sipterm, sp_dir, sipterm_in, opts.seconds)
    log(f"baresip calls baresip: {opts.seconds:.0f} s Opus call ...")
    bp_dir = os.path.join(workdir, "baresip-pair")
    os.makedirs(bp_dir)
    bp_cpu, bp_each = run_baresip_pair(bp_dir, baresip_in, opts.seconds)
    pair_row = ("CPU s, both ends of a call between two of each (caller + callee)",
                f"{fmt(sp_cpu)} ({fmt(sp_each[1])} + {fmt(sp_each[0])})",
                f"{fmt(bp_cpu)} ({fmt(bp_each[1])} + {fmt(bp_each[0])})", ratio(sp_cpu, bp_cpu))
    if opts.pair_only:
        print("| {} | {} | {} | {} |".format(*pair_row))
        shutil.rmtree(workdir, ignore_errors=True)
        return
    log(f"sipterm: {opts.seconds:.0f} s Opus call to a sipp echo ...")
    s_dir = os.path.join(workdir, "sipterm")
    os.makedirs(s_dir)
    s_cpu, s_rss, s_offsets = run_sipterm(opts.sipterm, s_dir, sipterm_in, opts.seconds)
    log(f"sipterm with echo cancellation, noise suppression and gain: {opts.seconds:.0f} s ...")
    p_dir = os.path.join(workdir, "sipterm-processing")
    os.makedirs(p_dir)
    p_cpu, p_rss, _ = run_sipterm(opts.sipterm, p_dir, sipterm_in, opts.seconds, PROCESSING_ON)
    log(f"baresip: {opts.seconds:.0f} s Opus call to a sipp echo ...")
    b_dir = os.path.join(workdir, "baresip")
    os.makedirs(b_dir)
    b_cpu, b_rss, b_offsets, b_start_gap = run_baresip(b_dir, baresip_in, opts.seconds)
    load_after = os.getloadavg()

    s_lat, s_found, s_total = median_ms(s_offsets)
    b_lat, b_found, b_total = median_ms(b_offsets)
    rows = [
        pair_row,
        ("CPU s (utime+stime), call to a sipp echo", fmt(s_cpu), fmt(b_cpu), ratio(s_cpu, b_cpu)),
        ("CPU s with AEC+NS+AGC (sipterm; baresip without)", fmt(p_cpu), fmt(b_cpu), ratio(p_cpu, b_cpu)),
        ("peak RSS MB with AEC+NS+AGC", fmt(p_rss, 1), fmt(b_rss, 1), ratio(p_rss, b_rss)),
        ("peak RSS MB (VmHWM)", fmt(s_rss, 1), fmt(b_rss, 1), ratio(s_rss, b_rss)),
        (f"round-trip latency ms (median; floor ptime + Opus look-ahead = {PACKETISATION_FLOOR_MS})",
         fmt(s_lat, 1), fmt(b_lat, 1), ratio(s_lat, b_lat)),
    ]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# sipterm vs baresip ({now})",
        "",
        f"{opts.seconds:.0f} s Opus calls on 127.0.0.1: sipterm to sipterm and baresip to baresip "
        "(the callee answers at once; CPU of both processes), then each to a sipp UAS echoing RTP "
        f"(-rtp_echo). {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before / "
        f"{load_after[0]:.2f} after. Defaults of each (sipterm: SRTP optional; baresip: none), "
        "WAV files instead of sound cards (baresip: aufile source, sndfile dumps of what it "
        "encodes and decodes; sipterm: --audio-in / --audio-out).",
        "",
        "| metric | sipterm | baresip | sipterm/baresip |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m} | {a} | {b} | {r} |" for m, a, b, r in rows]
    lines += [
        "",
        f"Clicks found: sipterm {s_found}/{s_total}, baresip {b_found}/{b_total}.",
        "sipterm offsets ms: " + ", ".join(fmt(o, 1) for o in s_offsets),
        "baresip offsets ms: " + ", ".join(fmt(o, 1) for o in b_offsets),
    ]
    lines += [
        "",
        "How latency is measured: the input WAV has a 10 ms chirp every 2 s over a quiet 440 Hz tone;",
        "each chirp is found by cross-correlation in what comes back, the median offset is shown.",
        "sipterm: offset between --audio-in and --audio-out, both advanced by one 20 ms media tick",
        "from the start of the media session, so it includes sending, the echo, sipterm's jitter",
        "buffer and playout. baresip (no audio player module: 1.0's alsa `null` player does not",
        "block and spins a core; no other 1.0 player is paced without a sound card): offset between",
        "its sndfile enc.wav (written as frames are encoded) and dec.wav (written as packets are",
        f"decoded, after its jitter buffer) plus the wall-clock gap between their first samples",
        f"({b_start_gap:.1f} ms, polled every 1 ms). It leaves out baresip's source buffer and playout",
        "buffer, so baresip's figure is a lower bound.",
    ]
    lines += [
        "",
        subprocess.run([opts.sipterm, "--version"], capture_output=True, text=True).stdout.strip()
        + "; baresip: Debian baresip-core "
        + subprocess.run(["dpkg-query", "-W", "-f=${Version}", "baresip-core"], capture_output=True, text=True).stdout,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(opts.out, "w") as f:
        f.write(text)
    log(f"wrote {opts.out}")
    if opts.keep:
        log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(f"bench failed: {e}\n(logs kept in the scratch dir named above)")
