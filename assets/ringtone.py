#!/usr/bin/env python3
"""Generates assets/ringtone.wav, sipterm's built-in ringtone (embedded with include_bytes!).

A two-tone trill: C6 and E6 (1046.5 / 1318.5 Hz, a major third) alternating every 50 ms for
0.8 s, 0.4 s of silence, the trill again, 16-bit mono at 16 kHz, 2 s (64 KB). Each note has
5 ms raised-cosine edges, so there are no clicks. Standard library only; deterministic output.

    python3 assets/ringtone.py          # rewrites assets/ringtone.wav beside this script
"""
import math
import os
import struct
import wave

RATE = 16000
NOTE_S = 0.05
NOTES = (1046.5, 1318.5)
EDGE_S = 0.005
PEAK = 0.45 * 32767


def trill(seconds):
    out = []
    note_len = int(RATE * NOTE_S)
    edge = int(RATE * EDGE_S)
    for n in range(int(seconds / NOTE_S)):
        freq = NOTES[n % 2]
        for i in range(note_len):
            t = (n * note_len + i) / RATE
            gain = 1.0
            if i < edge:
                gain = 0.5 - 0.5 * math.cos(math.pi * i / edge)
            elif i >= note_len - edge:
                gain = 0.5 - 0.5 * math.cos(math.pi * (note_len - 1 - i) / edge)
            out.append(PEAK * gain * math.sin(2 * math.pi * freq * t))
    return out


def main():
    samples = trill(0.8) + [0.0] * int(RATE * 0.4) + trill(0.8)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ringtone.wav")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", int(round(s))) for s in samples))
    print(f"{path}: {len(samples)} samples, {len(samples) / RATE:.2f} s")


if __name__ == "__main__":
    main()
