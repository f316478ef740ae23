"""Each side's `impls/`: a git revision's tree extracted once, or the working tree itself.

`git archive REV impls` into a cache folder keyed by the full commit: nothing in the repository
changes (no worktree to prune after a kill), and a second `ab` of the same revision reuses the
folder and numba's on-disk cache inside it. The worker imports it as `scanlab.impls` (worker.SideImpls),
under HEAD's `scanlab.harness`."""
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKING_TREE = "WORKTREE"


class RevisionError(ValueError):
    """A revision that git cannot resolve, or a tree without `impls/`."""


@dataclass(frozen=True)
class Side:
    name: str  # base | head
    revision: str  # as the user gave it
    commit: str  # full hash; for the working tree, HEAD's
    dirty: bool  # the working tree with uncommitted changes
    impls: Path  # the tree imported as `scanlab.impls`

    @property
    def tree_digest(self):
        """What the side's code is: its commit, and for a dirty working tree also a digest of its
        changes, so that a run resumes only onto the same code."""
        if self.revision != WORKING_TREE or not self.dirty:
            return self.commit
        root = self.impls.parent
        digest = hashlib.sha256(_git("diff", "HEAD", "--no-ext-diff", "--binary", cwd=root).encode())
        for name in sorted(_git("ls-files", "--others", "--exclude-standard", "impls", cwd=root).splitlines()):
            digest.update(name.encode() + (root / name).read_bytes())
        return f"{self.commit}+{digest.hexdigest()[:12]}"

    @property
    def label(self):
        short = self.commit[:12]
        if self.revision == WORKING_TREE:
            return f"working tree ({short}{' + uncommitted changes' if self.dirty else ', clean'})"
        return f"{self.revision} ({short})"


def _git(*args, cwd=ROOT):
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise RevisionError("ab needs git, and no `git` command is installed") from None
    if done.returncode:
        raise RevisionError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"git {' '.join(args)} failed")
    return done.stdout.strip()


IMPORTED_AS = "scanlab.impls"


def cache_root():
    """This user's cache (mode 0700: its trees are imported and run, so no one else may write there)."""
    root = Path(os.environ.get("SCANLAB_AB_CACHE") or Path(tempfile.gettempdir()) / f"scanlab-ab-{os.getuid()}")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


def resolve(name, revision, root=ROOT):
    """The Side for `revision` ('WORKTREE': the working tree as it is, uncommitted changes included)."""
    if not (Path(root) / ".git").exists():
        raise RevisionError(f"--repo {root} is not a git checkout")
    if revision == WORKING_TREE:
        if not (Path(root) / "impls").is_dir():
            raise RevisionError(f"the working tree {root} has no impls/ folder: not a scanlab checkout")
        commit = _git("rev-parse", "HEAD", cwd=root)
        # the specimen is impls/: a change there, untracked files included, makes the side dirty
        dirty = bool(_git("status", "--porcelain", "--untracked-files=all", "--", "impls", cwd=root))
        return Side(name, revision, commit, dirty, Path(root) / "impls")
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=root)
    except RevisionError:
        raise RevisionError(f"{revision!r} is not a commit in {root} (git rev-parse found none)") from None
    return Side(name, revision, commit, False, extract(commit, root))


def extract(commit, root=ROOT):
    """`impls/` of `commit`, extracted once into the cache (atomically: a kill mid-extraction leaves
    no half tree behind to be reused)."""
    # kept per import name: numba's caches inside a tree name the modules it was compiled as, and a tree
    # cached when workers imported it as top-level `impls` fails to load as `scanlab.impls`
    target = cache_root() / IMPORTED_AS / commit / "impls"
    if target.is_dir():
        return target
    if not _git("ls-tree", "-d", "--name-only", commit, "impls", cwd=root):
        raise RevisionError(f"{commit[:12]} has no impls/ folder: not a scanlab revision")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix="extracting-"))
    try:
        archive = subprocess.run(["git", "archive", "--format=tar", commit, "impls"], cwd=root, capture_output=True)
        if archive.returncode:
            raise RevisionError(f"git archive {commit[:12]} impls failed: {archive.stderr.decode().strip()}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            # the "data" filter (no links out, no devices) exists from Python 3.10.12 on
            tar.extractall(staging, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        os.replace(staging / "impls", target)
    except OSError:
        if not target.is_dir():  # else another process extracted the same commit first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
