#!/usr/bin/env bash
# Real Caffe 1.0 (Debian 11 "bullseye" python3-caffe, CPU) as an oracle for the differential
# fuzzer in tests/caffe_oracle/. The chroot is built once and cached outside the repository.
#
#   scripts/caffe_oracle.sh build            build the chroot (needs root and deb.debian.org; ~5 min, 1.1 GB)
#   scripts/caffe_oracle.sh status           print the chroot path and exit 0 when it is ready, 1 otherwise
#   scripts/caffe_oracle.sh run REQUEST_DIR  run scripts/caffe_oracle_runner.py on a request folder
#                                            (request.json + prototxt + npz); results land in REQUEST_DIR/out/
#
# SPARKNET_CAFFE_ORACLE_DIR overrides the cache folder (default ~/.cache/sparknet/caffe-oracle).
set -euo pipefail

ORACLE_DIR="${SPARKNET_CAFFE_ORACLE_DIR:-$HOME/.cache/sparknet/caffe-oracle}"
ROOT="$ORACLE_DIR/bullseye"
READY="$ORACLE_DIR/ready"
MIRROR="${SPARKNET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUNNER="$HERE/caffe_oracle_runner.py"

die() { echo "caffe_oracle.sh: $*" >&2; exit 2; }

build() {
    if [[ -f "$READY" ]]; then
        echo "caffe oracle already built at $ROOT"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "building the chroot needs root (debootstrap and chroot); run it as root"
    if ! command -v debootstrap >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
    fi
    mkdir -p "$ORACLE_DIR"
    # A half-built tree from an interrupted run is not trusted: start over.
    rm -rf "$ROOT"
    debootstrap --variant=minbase bullseye "$ROOT" "$MIRROR"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        apt-get update -qq
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends python3-caffe caffe
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin apt-get clean
    # Smoke test: the runner's imports work inside the chroot.
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin GLOG_minloglevel=2 \
        python3 -c "import caffe, numpy; print('caffe', caffe.__version__, 'numpy', numpy.__version__)"
    date -u +%Y-%m-%dT%H:%M:%SZ > "$READY"
    echo "caffe oracle built at $ROOT"
}

status() {
    if [[ ! -f "$READY" ]]; then
        echo "caffe oracle not built (run: bash scripts/caffe_oracle.sh build)"
        return 1
    fi
    if [[ "$(id -u)" != 0 ]]; then
        echo "caffe oracle at $ROOT needs root to run (chroot)"
        return 1
    fi
    echo "$ROOT"
}

run() {
    local request="${1:-}"
    [[ -n "$request" && -f "$request/request.json" ]] || die "run needs a folder holding request.json"
    [[ -f "$READY" ]] || die "caffe oracle not built (run: bash scripts/caffe_oracle.sh build)"
    [[ "$(id -u)" == 0 ]] || die "running the oracle needs root (chroot)"
    local job rc=0
    job="$(mktemp -d "$ROOT/tmp/oracle.XXXXXX")"
    cp -r "$request/." "$job/"
    cp "$RUNNER" "$job/runner.py"
    local inside="/tmp/$(basename "$job")"
    # A Caffe CHECK failure aborts the runner: keep what it finished (out/done says which).
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp GLOG_minloglevel=2 \
        OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
        python3 "$inside/runner.py" "$inside" || rc=$?
    rm -rf "$request/out"
    if [[ -d "$job/out" ]]; then cp -r "$job/out" "$request/out"; else mkdir -p "$request/out"; fi
    rm -rf "$job"
    return "$rc"
}

case "${1:-}" in
    build) build ;;
    status) status ;;
    run) shift; run "$@" ;;
    *) die "usage: caffe_oracle.sh build | status | run REQUEST_DIR" ;;
esac
