#!/usr/bin/python3
"""Embed a file in the binary as a C string: embed.py INPUT OUTPUT SYMBOL."""
import sys

data = open(sys.argv[1], "rb").read()
sym = sys.argv[3]
with open(sys.argv[2], "w") as out:
    out.write(f"/* Generated from {sys.argv[1].rsplit('/', 1)[-1]} by embed.py: do not edit. */\n")
    out.write("#include <stddef.h>\n\n")
    out.write(f"const char {sym}[] =\n")
    for i in range(0, len(data), 64):
        chunk = data[i:i + 64]
        out.write('    "' + "".join(f"\\x{b:02x}" for b in chunk) + '"\n')
    out.write(";\n")
    out.write(f"const size_t {sym}_len = {len(data)};\n")
