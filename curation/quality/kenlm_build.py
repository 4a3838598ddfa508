"""Locate, or build once and cache, KenLM's `lmplz` and `build_binary`.

The `kenlm` wheel on PyPI is query-only (it scores with a model but cannot estimate one),
and no registry ships the estimation binaries, so the set-up (`make`, through
`python -m curation.quality.kenlm_build`) builds them from the same kenlm sdist that pip
installs: it downloads `kenlm==0.3.0` with pip, configures it with CMake (Release) and
makes only the two targets. They need Boost (program_options, system, thread; test for
CMake's configure step) and the zlib/bzip2/xz headers: on Debian/Ubuntu these are
installed with apt-get when missing and we are root; otherwise the error names the
apt command to run.

The binaries are cached in `~/.cache/sharpen/kenlm-0.3.0/bin` (or `$SHARPEN_KENLM_BIN`).
A build runs in a temporary directory beside the cache and is renamed into place only
when both binaries run, so a killed build leaves nothing that looks finished; two
concurrent builds are harmless (the first rename wins, the other is discarded).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

KENLM_VERSION = "0.3.0"
ENV_BIN = "SHARPEN_KENLM_BIN"
APT_PACKAGES = ("libboost-program-options-dev", "libboost-system-dev",
                "libboost-thread-dev", "libboost-test-dev", "zlib1g-dev", "libbz2-dev",
                "liblzma-dev")
BUILD_TOOLS = ("cmake", "make", "g++")


class KenLMBuildError(RuntimeError):
    """The binaries could not be found or built; the message says what to do."""

    user_facing = True


@dataclass(frozen=True)
class KenLMBinaries:
    lmplz: Path
    build_binary: Path


def bin_dir() -> Path:
    """Where the binaries are cached: `$SHARPEN_KENLM_BIN`, else the user cache."""
    env = os.environ.get(ENV_BIN)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sharpen" / f"kenlm-{KENLM_VERSION}" / "bin"


def _runs(binary: Path) -> bool:
    """Whether the binary starts (its shared Boost libraries are present): `lmplz --help`
    and `build_binary` without arguments print their usage (and exit 1)."""
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return False
    args = [str(binary), "--help"] if binary.name == "lmplz" else [str(binary)]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return "Usage" in out.stdout + out.stderr or "Kneser-Ney" in out.stdout + out.stderr


def _cached(directory: Path) -> KenLMBinaries | None:
    bins = KenLMBinaries(directory / "lmplz", directory / "build_binary")
    return bins if _runs(bins.lmplz) and _runs(bins.build_binary) else None


def missing_apt_packages() -> list[str]:
    """The build prerequisites dpkg does not report as installed ([] without dpkg)."""
    if shutil.which("dpkg-query") is None:
        return []
    missing = []
    for pkg in APT_PACKAGES:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                             capture_output=True, text=True)
        if out.returncode != 0 or "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def ensure_prerequisites(log: Callable[[str], None] = print) -> None:
    """Install the missing apt packages (as root), or fail naming the command to run."""
    tools = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    missing = missing_apt_packages()
    if not missing and not tools:
        return
    apt = ["apt-get", "install", "-y", *missing, *(["cmake", "make", "g++"] if tools else [])]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise KenLMBuildError(f"building KenLM's lmplz needs {missing + tools}: run "
                              f"`sudo apt-get update && sudo {' '.join(apt)}` (or set "
                              f"{ENV_BIN} to a directory holding lmplz and build_binary)")
    log(f"kenlm: installing build prerequisites: {' '.join(missing + tools)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], [*apt, "-qq"]):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise KenLMBuildError(f"`{' '.join(cmd)}` failed (exit {out.returncode}): "
                                  f"{_tail(out.stderr or out.stdout)}")


def _tail(text: str, n: int = 400) -> str:
    one = " | ".join(line.strip() for line in text.strip().splitlines()[-6:] if line.strip())
    return one[-n:] if one else "(no output)"


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise KenLMBuildError(f"{what}: `{' '.join(cmd)}` failed (exit {out.returncode}): "
                              f"{_tail(out.stderr or out.stdout)}")


def _remove_dead_builds(target: Path) -> None:
    """Delete the build directories of killed builds (their process no longer exists)."""
    for stale in target.parent.glob(f".{target.name}.build-*"):
        try:
            pid = int(stale.name.split(".build-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def build(target: Path, log: Callable[[str], None] = print) -> KenLMBinaries:
    """Download the kenlm sdist, build lmplz and build_binary, and move them to `target`."""
    ensure_prerequisites(log)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-{os.getpid()}-",
                                 dir=target.parent))
    try:
        start = time.perf_counter()
        log(f"kenlm: building lmplz and build_binary {KENLM_VERSION} in {work}")
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(work),
              f"kenlm=={KENLM_VERSION}"], work, "downloading the kenlm sdist")
        sdists = sorted(work.glob("kenlm-*.tar.gz"))
        if not sdists:
            raise KenLMBuildError(f"pip download kenlm=={KENLM_VERSION} gave no sdist in {work}")
        with tarfile.open(sdists[0]) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: refuse unsafe members
                tar.extractall(work / "src", filter="data")
            else:
                tar.extractall(work / "src")  # noqa: S202 - the sdist pip just downloaded
        src = next((work / "src").iterdir())
        _run(["cmake", "-S", str(src), "-B", str(work / "build"), "-DCMAKE_BUILD_TYPE=Release"],
             work, "configuring kenlm")
        jobs = str(max(1, min(os.cpu_count() or 1, 8)))
        _run(["make", "-j", jobs, "lmplz", "build_binary"], work / "build", "building kenlm")
        staged = work / "bin"
        staged.mkdir()
        for name in ("lmplz", "build_binary"):
            shutil.copy2(work / "build" / "bin" / name, staged / name)
        if _cached(staged) is None:
            raise KenLMBuildError(f"the freshly built binaries in {staged} do not run")
        if target.exists() and _cached(target) is None:  # a stale or broken cache
            shutil.rmtree(target)
        try:
            staged.rename(target)
        except OSError:
            if _cached(target) is None:  # not a concurrent build that won the race
                raise
        log(f"kenlm: built in {time.perf_counter() - start:.0f} s, cached in {target}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    found = _cached(target)
    if found is None:
        raise KenLMBuildError(f"{target}: lmplz/build_binary missing after the build")
    return found


def find_binaries(build_missing: bool = True, log: Callable[[str], None] = print) -> KenLMBinaries:
    """The cached binaries; built (once) when missing and `build_missing`. A cache whose
    binaries no longer start (e.g. Boost was removed) gets its prerequisites reinstalled."""
    target = bin_dir()
    found = _cached(target)
    if found is not None:
        return found
    if target.is_dir() and (target / "lmplz").is_file():
        ensure_prerequisites(log)
        found = _cached(target)
        if found is not None:
            return found
    if not build_missing:
        raise KenLMBuildError(f"KenLM's lmplz/build_binary are not in {target}: run "
                              f"`python -m curation.quality.kenlm_build` (or `make`)")
    return build(target, log)


def main() -> int:
    try:
        bins = find_binaries(log=lambda m: print(m, file=sys.stderr, flush=True))
    except KenLMBuildError as e:
        print(f"kenlm_build: error: {e}", file=sys.stderr)
        return 1
    print(f"lmplz: {bins.lmplz}\nbuild_binary: {bins.build_binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
