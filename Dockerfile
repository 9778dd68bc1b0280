# One image for every farm service (controller, CPU and GPU workers, Flower): farm is installed once, here, at
# build time; containers start it, they never pip-install. The default is a CPU image; the GPU image is the same
# file with a CUDA torch of the same version (it satisfies every requirement, optimum-quanto's included, so pip
# never swaps it):
#   docker compose build                                    # CPU (torch 2.13.0 from the CPU index)
#   docker compose --profile gpu build worker-gpu           # GPU: TORCH_INDEX=.../cu128, EXTRAS=worker
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=worker,runtimes

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from its own index and pinned: a bare `torch` requirement would pull a multi-GB CUDA wheel (or, on
# the GPU image, replace the CUDA build with another version).
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md /src/
COPY controller /src/controller
COPY worker /src/worker
COPY shared /src/shared
RUN pip install "/src[${EXTRAS}]" "flower>=2" "torch==${TORCH_VERSION}" \
    && python -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(v != '${TORCH_VERSION}')"

# int4 on a CPU needs optimum-quanto's C++ unpack extension, which quanto compiles on first use into its folder in
# site-packages (root's, so a worker running as `farm` could not write it): build it here, as `make install` does.
# Built with -O3 only (no -march=native), so the image runs on any x86-64 host. g++ stays for torch's load check,
# and the build folder goes to `farm` below: torch takes a lock file there even to load a built extension.
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/* \
    && python -c "from worker.compression.int4 import load_cpu_unpack_kernel as k; k()" \
    && rm -rf /src

# Not root: a job's files, the artifacts and the spool belong to this user. RAPL counters are root-only since
# Linux 5.10, so CPU energy is measured only where the host grants read access (docs/security.md, "RAPL").
RUN useradd --create-home --uid 10001 farm \
    && mkdir -p /artifacts /spool /data && chown farm:farm /artifacts /spool \
    && chown -R farm:farm "$(python -c "from optimum.quanto.library.extensions import get_extension as g; print(g('quanto_cpp').build_directory)")"
USER farm
WORKDIR /home/farm
CMD ["farm", "--help"]
