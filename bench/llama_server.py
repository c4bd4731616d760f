"""llama-cpp-python's OpenAI-compatible server, with the model loaded the way `optimizer.local_model` loads it.

`python -m bench.llama_server <llama_cpp.server arguments>`: the same server and arguments, except that weights
stay in plain CPU buffers (see `optimizer.local_model.plain_cpu_buffers`: on AMX CPUs the default build
segfaults on the first decode), so the bench's task LM computes exactly what the in-process local model does.
"""

from __future__ import annotations

from llama_cpp.server.__main__ import main

from optimizer.local_model import plain_cpu_buffers

if __name__ == "__main__":
    with plain_cpu_buffers():  # the server loads its model at startup, inside main()
        main()
