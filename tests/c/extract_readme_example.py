#!/usr/bin/env python3
"""Copy the README's C usage example (the ```c block that starts with
"/* readme-example */") to a file, so CTest compiles and runs exactly what the
README shows."""
import re
import sys

readme, out = sys.argv[1], sys.argv[2]
text = open(readme, encoding="utf-8").read()
blocks = re.findall(r"```c\n(.*?)```", text, re.S)
examples = [b for b in blocks if b.startswith("/* readme-example */")]
if len(examples) != 1:
    sys.exit(f"{readme}: expected one ```c block starting with /* readme-example */, found {len(examples)}")
with open(out, "w", encoding="utf-8") as f:
    f.write(examples[0])
