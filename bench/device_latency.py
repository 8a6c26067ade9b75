#!/usr/bin/env python3
"""Round-trip latency through real sound devices (`make bench-latency`). Standard library only.

PulseAudio (private daemon, bench/latency.pa) gives one stereo null sink `lat`: clicks played
into its left channel are the microphone (`mic`, a remap source), and the softphone's speaker
(`spk`, a remap sink) is its right channel. One parecord of `lat.monitor` records both
channels on one clock, so the offset between a click on the left and the same click on the
right is the device-to-device round trip: capture, encoding, the network path, the far end,
the jitter buffer, playback and PulseAudio's own buffers.

  1. Calibration: a module-loopback mic -> spk of latency_msec=L must measure about L.
  2. sipterm: an Opus call to a sipp UAS echoing RTP (-rtp_echo), cpal on `mic` / `spk`.

Usage: bench/device_latency.py [--sipterm PATH] [--seconds N] [--loopback-ms L] [--keep]
"""

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import wave

import bench

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PA = os.path.join(ROOT, "tests", "data", "pulse")


def log(*args):
    print("[latency]", *args, file=sys.stderr, flush=True)


class Pulse:
    def __init__(self, workdir):
        # Short path: the socket path must stay under 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="st-lat-", dir="/tmp")
        subprocess.run([os.path.join(PA, "pa-start.sh"), self.dir, os.path.join(HERE, "latency.pa")],
                       check=True, capture_output=True)
        self.env = dict(os.environ, PULSE_SERVER=f"unix:{self.dir}/pulse/native",
                        PULSE_COOKIE=f"{self.dir}/home/.config/pulse/cookie")

    def run(self, *args):
        return subprocess.run(list(args), env=self.env, check=True, capture_output=True, text=True).stdout

    def stop(self):
        subprocess.run([os.path.join(PA, "pa-stop.sh"), self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def read_stereo(path):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 2 or w.getframerate() != bench.RATE:
            raise RuntimeError(f"{path}: {w.getnchannels()} channels at {w.getframerate()} Hz")
        data = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data[: len(data) // 2 * 2])
    return list(samples[0::2]), list(samples[1::2])


def locate(hp, template, t_energy, start, end):
    """(sample index, correlation) of the chirp in hp[start:end]: the 1 ms block with the most
    high-passed energy, then exact cross-correlation within +-3 ms of it."""
    n, block = len(template), bench.RATE // 1000
    start, end = max(0, start), min(len(hp) - n, end)
    if end <= start:
        return None, 0.0
    best_block, best_energy = start, -1.0
    for b in range(start, end, block):
        e = sum(v * v for v in hp[b : b + n : 4])
        if e > best_energy:
            best_block, best_energy = b, e
    best_lag, best_corr = None, 0.0
    for lag in range(max(start, best_block - 3 * block), min(end, best_block + 3 * block)):
        seg = hp[lag : lag + n]
        energy = sum(v * v for v in seg) ** 0.5
        if energy:
            corr = sum(a * b for a, b in zip(template, seg)) / (t_energy * energy)
            if corr > best_corr:
                best_lag, best_corr = lag, corr
    return best_lag, best_corr


def round_trips(path, seconds):
    """Per click on the left channel (as played into the microphone path, found in every
    CLICK_EVERY window: paplay may stretch the spacing on a loaded machine), the time until
    the same click on the right channel (the speaker), in ms; None: not found."""
    left, right = read_stereo(path)
    template = bench.highpass(bench.chirp())
    t_energy = sum(v * v for v in template) ** 0.5
    hl, hr = bench.highpass(left), bench.highpass(right)
    window = int(bench.CLICK_EVERY * bench.RATE)
    offsets = []
    at = 0
    while at + window < len(hl):
        lag, corr = locate(hl, template, t_energy, at, at + window)
        if lag is None or corr < 0.8:
            at += window
            continue
        back, back_corr = locate(hr, template, t_energy, lag, lag + bench.SEARCH_MS * bench.RATE // 1000)
        offsets.append(None if back is None or back_corr < 0.5 else (back - lag) * 1000.0 / bench.RATE)
        # The next click is at least a second later.
        at = lag + bench.RATE
    return offsets


def record_while(pulse, workdir, name, clicks_wav, seconds, during):
    """parecord lat.monitor while paplay plays the clicks into the mic path and `during()` runs."""
    out = os.path.join(workdir, f"{name}.wav")
    rec = subprocess.Popen(["parecord", "--latency-msec=10", "-d", "lat.monitor", "--file-format=wav",
                            "--rate=48000", "--channels=2", out], env=pulse.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    play = subprocess.Popen(["paplay", "--latency-msec=10", "-d", "micplay", clicks_wav], env=pulse.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        during(seconds)
    finally:
        play.terminate()
        play.wait(5)
        rec.send_signal(2)  # SIGINT: parecord writes the WAV header's length
        rec.wait(5)
    return out


def calibrate(pulse, workdir, clicks_wav, seconds, loopback_ms):
    module = pulse.run("pactl", "load-module", "module-loopback", "source=mic", "sink=spk",
                       f"latency_msec={loopback_ms}").strip()
    try:
        time.sleep(1.0)  # the loopback settles on its target
        path = record_while(pulse, workdir, "calibration", clicks_wav, seconds, time.sleep)
    finally:
        pulse.run("pactl", "unload-module", module)
    return round_trips(path, seconds)


def call(pulse, binary, workdir, clicks_wav, seconds, processing=True):
    sipp, sipp_port = bench.start_sipp(workdir, seconds + 10)
    config = os.path.join(workdir, "sipterm.toml")
    internal_log = os.path.join(workdir, "sipterm-internal.log")
    with open(config, "w") as f:
        f.write('[log]\nlevel = "info"\nfile = "%s"\n[audio]\ninput = "pulseaudio:mic"\n'
                'output = "pulseaudio:spk"\n' % internal_log)
        if not processing:
            f.write("echo_cancel = false\nnoise_suppression = false\nauto_gain = false\n")
    env = dict(pulse.env, HOME=workdir, XDG_CONFIG_HOME=workdir, XDG_STATE_HOME=workdir,
               XDG_DATA_HOME=workdir)
    client = bench.Process("sipterm", [binary, "--headless", "--listen", "127.0.0.1:0", "--config", config],
                           workdir, env=env)
    try:
        client.expect("ready", lambda l: bench.json_event(l, event="ready"), 10)
        client.send(f"dial sip:bench@127.0.0.1:{sipp_port}")
        client.expect("call confirmed", lambda l: bench.json_event(l, event="call", state="confirmed"), 10)
        time.sleep(1.0)
        path = record_while(pulse, workdir, "call", clicks_wav, seconds, time.sleep)
        client.send("hangup")
        client.expect("call terminated", lambda l: bench.json_event(l, event="call", state="terminated"), 10)
        client.send("quit")
        client.stop()
    finally:
        client.stop(0.1)
        sipp.stop(10)
    warnings = [json.loads(l)["message"] for l in client.text if bench.json_event(l, event="warning")]
    sound_lines = []
    if os.path.exists(internal_log):
        with open(internal_log) as f:
            sound_lines = [l.strip() for l in f if "underrun" in l or "overrun" in l]
    return round_trips(path, seconds), warnings, sound_lines


def summary(offsets):
    found = [o for o in offsets if o is not None]
    if not found:
        return "no click found"
    return (f"median {statistics.median(found):.1f} ms, min {min(found):.1f}, max {max(found):.1f} "
            f"({len(found)}/{len(offsets)} clicks)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sipterm", default=os.path.join(ROOT, "target/release/sipterm"))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--loopback-ms", type=int, default=50)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-processing", action="store_true",
                        help="echo cancellation, noise suppression and gain control off")
    opts = parser.parse_args()
    for tool in ("sipp", "pulseaudio", "paplay", "parecord", "pactl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (make test-deps installs it)")
    workdir = tempfile.mkdtemp(prefix="sipterm-latency-")
    clicks = os.path.join(workdir, "clicks.wav")
    bench.write_wav(clicks, bench.make_input(opts.seconds + 4), 1)
    pulse = Pulse(workdir)
    try:
        log(f"calibration: module-loopback latency_msec={opts.loopback_ms}, {opts.seconds:.0f} s")
        cal = calibrate(pulse, workdir, clicks, opts.seconds, opts.loopback_ms)
        log(f"sipterm: Opus call to a sipp echo through mic/spk, {opts.seconds:.0f} s")
        st, warnings, sound = call(pulse, os.path.abspath(opts.sipterm), workdir, clicks, opts.seconds,
                                   processing=not opts.no_processing)
    finally:
        pulse.stop()
    print(f"calibration (module-loopback latency_msec={opts.loopback_ms}): {summary(cal)}")
    what = "voice processing off" if opts.no_processing else "defaults: echo cancellation, noise suppression, gain control"
    print(f"sipterm device round trip ({what}): {summary(st)}")
    print("sipterm offsets ms: " + ", ".join("-" if o is None else f"{o:.1f}" for o in st))
    print(f"sipterm warnings: {warnings}")
    for line in sound:
        print(f"sipterm log: {line}")
    if opts.keep:
        log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.CalledProcessError) as e:
        sys.exit(f"latency bench failed: {e}")
