"""Build the course corpus (``data/corpus/{train,validation}.parquet``) from openly licensed packages.

Sources are Debian documentation packages (fetched with ``apt-get download``) and Python source
code (the CPython 3.11 standard library from Debian, plus a few permissively licensed PyPI sdists
fetched with ``pip download``). Everything downloaded or extracted lives in a cache outside the
repository (``$SAE_COURSE_CACHE``, default ``~/.cache/sae-course``).

    python data/build/make_corpus.py            # fetch, clean, dedupe, split, write parquet
    python data/build/make_corpus.py --no-fetch # reuse the cached downloads

Pipeline: extract text (HTML -> text with ``html.parser``, man pages -> text with ``groff``,
reST sources and plain text as they are) -> normalise whitespace -> drop untranslated English
paragraphs from non-English sources -> drop repeated paragraphs (boilerplate) -> chunk into
documents of ~2-6k characters -> exact dedupe on a normalised hash -> cap each source so the
category mix is roughly 45% English / 25% other languages / 30% Python -> split by *source file*
into train / validation (97 / 3, seeded) -> parquet with one ``text`` column, zstd-compressed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.paths import data_dir

CACHE = Path(os.environ.get("SAE_COURSE_CACHE", Path.home() / ".cache" / "sae-course"))
SEED = 1234
VAL_FRACTION = 0.03
CHUNK_MIN, CHUNK_MAX, CHUNK_HARD_MAX = 2000, 6000, 8000
MIN_DOC_CHARS = 300


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass
class Source:
    """One corpus source: where its files are inside an extracted package and how to read them."""

    name: str
    package: str  # Debian package name, or "pypi:<name>==<version>"
    lang: str  # "en", "de", ..., or "python"
    license: str
    kind: str  # "html", "rst", "text_gz", "man", "python"
    globs: list[str] = field(default_factory=list)
    max_frac: float | None = None  # cap as a fraction of the language's budget (code: of the code budget)


DOC = "usr/share/doc"
HB = f"{DOC}/debian-handbook/html"
PYDOC = f"{DOC}/python3.11/html/_sources"


def _ref(lang: str) -> Source:
    return Source(
        f"debian-reference-{lang}",
        f"debian-reference-{lang}",
        lang.split("-")[0],
        "GPL-2+",
        "text_gz",
        [f"usr/share/debian-reference/debian-reference.{lang}.txt.gz"],
        None if lang == "en" else 0.35,
    )


def _maint(lang: str) -> Source:
    return Source(
        f"maint-guide-{lang}",
        f"maint-guide-{lang}",
        lang.split("-")[0],
        "GPL-2+",
        "html",
        [f"{DOC}/maint-guide-{lang}/html/*.html"],
        0.1,
    )


def _handbook(lang: str, code: str, cap: float | None = None) -> Source:
    return Source(
        f"debian-handbook-{code}",
        "debian-handbook",
        code,
        "GPL-2+ or CC-BY-SA-3.0",
        "html",
        [f"{HB}/{lang}/*.html"],
        cap,
    )


MAN_LICENSES = {"manpages-ja": "licences of the original pages (JM Project; DFSG-free)", "manpages-zh": "GFDL-1.2+"}


def _man(lang: str, code: str, pkg: str, cap: float | None = None) -> Source:
    license = MAN_LICENSES.get(pkg, "GPL-3+ (manpages-l10n translations) and the original pages' licences")
    return Source(f"{pkg}-{code}", pkg, code, license, "man", [f"usr/share/man/{lang}/man*/*.gz"], cap)


PYPI_PACKAGES = {  # permissively licensed, mostly modern (typed, f-strings) Python
    "requests==2.32.3": "Apache-2.0",
    "click==8.1.7": "BSD-3-Clause",
    "rich==13.9.4": "MIT",
    "attrs==24.2.0": "MIT",
    "flask==3.0.3": "BSD-3-Clause",
    "httpx==0.27.2": "BSD-3-Clause",
    "jinja2==3.1.4": "BSD-3-Clause",
    "packaging==24.1": "Apache-2.0 or BSD-2-Clause",
}

SOURCES: list[Source] = [
    # ---- English prose (with embedded shell commands, config snippets, SQL and code samples)
    Source("python3.11-doc", "python3.11-doc", "en", "PSF-2.0", "rst", [f"{PYDOC}/**/*.rst.txt"]),
    Source(
        "postgresql-doc-15", "postgresql-doc-15", "en", "PostgreSQL", "html", [f"{DOC}/postgresql-doc-15/html/*.html"]
    ),
    Source(
        "python-django-doc",
        "python-django-doc",
        "en",
        "BSD-3-Clause",
        "html",
        [f"{DOC}/python-django-doc/html/**/*.html"],
    ),
    _ref("en"),
    _handbook("en-US", "en"),
    Source(
        "debian-policy", "debian-policy", "en", "GPL-2+", "rst", [f"{DOC}/debian-policy/policy.html/_sources/*.txt"]
    ),
    Source(
        "developers-reference",
        "developers-reference",
        "en",
        "GPL-2",
        "rst",
        ["usr/share/developers-reference/_sources/*.txt"],
    ),
    Source("maint-guide-en", "maint-guide", "en", "GPL-2+", "html", [f"{DOC}/maint-guide/html/*.html"]),
    Source("debmake-doc", "debmake-doc", "en", "Expat", "html", [f"{DOC}/debmake-doc/html/*.en.html"]),
    Source("harden-doc-en", "harden-doc", "en", "GPL-2", "html", [f"{DOC}/harden-doc/html/en-US/*.html"]),
    Source(
        "debian-faq", "debian-faq", "en", "verbatim-copying (SPI, see copyright)", "html", [f"{DOC}/debian/FAQ/*.html"]
    ),
    Source(
        "manpages-en", "manpages", "en", "Linux-man-pages-copyleft / GPL (per page)", "man", ["usr/share/man/man*/*.gz"]
    ),
    # ---- Other languages
    *[_ref(lang) for lang in ["de", "fr", "es", "it", "pt", "ja", "zh-cn"]],
    *[_maint(lang) for lang in ["de", "fr", "es", "ja", "ru", "zh-cn"]],
    # (the Sphinx _sources of the translations are the untranslated English; use their text builds)
    *[
        Source(
            f"developers-reference-{lang}",
            f"developers-reference-{lang}",
            lang,
            "GPL-2",
            "text_gz",
            [f"usr/share/developers-reference/{lang}/developers-reference.txt.gz"],
            0.1,
        )
        for lang in ["de", "fr", "ja"]
    ],
    _man("de", "de", "manpages-de", 0.3),
    _man("fr", "fr", "manpages-fr", 0.3),
    _man("es", "es", "manpages-es", 0.3),
    _man("ru", "ru", "manpages-ru", 0.3),
    _man("ja", "ja", "manpages-ja", 0.3),
    _man("zh_CN", "zh", "manpages-zh", 0.3),
    *[
        _handbook(lang, code, 0.3)
        for lang, code in [
            ("de-DE", "de"),
            ("fr-FR", "fr"),
            ("es-ES", "es"),
            ("it-IT", "it"),
            ("pt-BR", "pt"),
            ("nl-NL", "nl"),
            ("ru-RU", "ru"),
            ("ja-JP", "ja"),
            ("zh-CN", "zh"),
            ("ko-KR", "ko"),
            ("ar-MA", "ar"),
            ("el-GR", "el"),
            ("pl-PL", "pl"),
            ("sv-SE", "sv"),
            ("tr-TR", "tr"),
            ("vi-VN", "vi"),
        ]
    ],
    # ---- Python code
    Source(
        "cpython-stdlib", "libpython3.11-stdlib", "python", "PSF-2.0", "python", ["usr/lib/python3.11/**/*.py"], 0.3
    ),
    Source(
        "cpython-stdlib-minimal",
        "libpython3.11-minimal",
        "python",
        "PSF-2.0",
        "python",
        ["usr/lib/python3.11/**/*.py"],
        0.25,
    ),
    *[
        Source(f"pypi-{spec.split('==')[0]}", f"pypi:{spec}", "python", lic, "python", ["**/*.py"])
        for spec, lic in PYPI_PACKAGES.items()
    ],
    # the test suite last: it fills whatever the code budget has left
    Source(
        "cpython-testsuite",
        "libpython3.11-testsuite",
        "python",
        "PSF-2.0",
        "python",
        ["usr/lib/python3.11/test/**/*.py"],
    ),
]

#: Target share of characters per category; each category is capped to keep the mix near the
#: targets (token shares are measured after the tokenizer is trained, see data/README.md).
CATEGORY_CHARS = {"en": 30_000_000, "other": 13_500_000, "python": 15_000_000}
#: Cap per non-English language, so that no single language dominates "other".
PER_LANG_CHARS = 2_000_000
#: Characters per token differ a lot by script; scale the cap so each language gets similar tokens.
SCRIPT_CAP_SCALE = {"ja": 0.45, "zh": 0.4, "ko": 0.5, "ru": 0.6, "el": 0.6, "ar": 0.6}


def category(lang: str) -> str:
    return "en" if lang == "en" else ("python" if lang == "python" else "other")


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


def fetch(sources: list[Source]) -> None:
    """Download every package into the cache (idempotent) and unpack it under ``CACHE/ex/<package>``."""
    debs, ex = CACHE / "debs", CACHE / "ex"
    debs.mkdir(parents=True, exist_ok=True)
    ex.mkdir(parents=True, exist_ok=True)
    packages = sorted({s.package for s in sources})
    apt = [p for p in packages if not p.startswith("pypi:") and not list(debs.glob(f"{p}_*.deb"))]
    if apt:
        print(f"apt-get download {' '.join(apt)}", flush=True)
        subprocess.run(["apt-get", "download", *apt], cwd=debs, check=True)
    pypi = [p[5:] for p in packages if p.startswith("pypi:")]
    sdists = CACHE / "sdists"
    for spec in pypi:
        name, version = spec.split("==")
        if not list(sdists.glob(f"{name}-{version}.tar.gz")) and not list(
            sdists.glob(f"{name.lower()}-{version}.tar.gz")
        ):
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(sdists), spec],
                check=True,
            )
    for p in packages:
        target = ex / p.replace(":", "_").replace("==", "-")
        if target.exists():
            continue
        target.mkdir(parents=True)
        if p.startswith("pypi:"):
            name, version = p[5:].split("==")
            (tgz,) = [f for f in sdists.glob("*.tar.gz") if f.name.lower() == f"{name}-{version}.tar.gz".lower()]
            with tarfile.open(tgz) as tf:
                tf.extractall(target, filter="data")
        else:
            (deb,) = debs.glob(f"{p}_*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)


def source_files(src: Source) -> list[Path]:
    root = CACHE / "ex" / src.package.replace(":", "_").replace("==", "-")
    files: set[Path] = set()
    for g in src.globs:
        files.update(p for p in root.glob(g) if p.is_file())
    return sorted(files)


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

BLOCK_TAGS = {
    "p",
    "div",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "pre",
    "table",
    "tr",
    "section",
    "article",
    "blockquote",
    "figure",
    "caption",
    "title",
    "br",
    "hr",
}
VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"}
SKIP_TAGS = {"script", "style", "nav", "head", "noscript", "svg", "button", "form"}
SKIP_CLASSES = {
    "sphinxsidebar",
    "related",
    "navheader",
    "navfooter",
    "footer",
    "headerlink",
    "breadcrumbs",
    "toc",
    "docnav",
    "navigation",
    "sidebar",
    "site-header",
    "sphinxsidebarwrapper",
    "clearer",
    "doc-nav",
    "toc-wrapper",
    "skip-link",
    "legalnotice",
    "header",
    "nav",
    "indexterm",
}
SKIP_IDS = {
    "banner",
    "title",
    "header",
    "footer",
    "navbar",
    "docs-sidebar",
    "sidebar",
    "toc",
    "breadcrumbs",
    "bottom-nav",
    "masthead",
}


class HTMLText(HTMLParser):
    """HTML -> plain text: keeps ``<pre>`` verbatim, turns block elements into blank lines, skips navigation."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        if self.skip:
            if tag not in VOID_TAGS:
                self.skip += 1
            return
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if tag not in VOID_TAGS and (
            tag in SKIP_TAGS or classes & SKIP_CLASSES or a.get("id") in SKIP_IDS or a.get("role") == "navigation"
        ):
            self.skip = 1
            return
        if tag == "pre":
            self.pre += 1
        if tag in BLOCK_TAGS:
            self.out.append("\n" if tag == "br" else "\n\n")

    def handle_startendtag(self, tag, attrs):
        if not self.skip and tag in ("br", "hr"):
            self.out.append("\n")

    def handle_endtag(self, tag):
        if self.skip:
            if tag not in VOID_TAGS:
                self.skip -= 1
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in BLOCK_TAGS:
            self.out.append("\n\n")
        elif tag in ("td", "th"):
            self.out.append(" ")

    def handle_data(self, data):
        if self.skip:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        return "".join(self.out)


def html_to_text(raw: str) -> str:
    parser = HTMLText()
    parser.feed(raw)
    parser.close()
    text = parser.text().replace("¶", "")
    return re.sub(r"\n (?=\S)", "\n", text)  # whitespace collapsing leaves one leading space after blocks


def man_to_text(path: Path) -> str:
    """Render a gzipped man page with groff (UTF-8, no overstrike, left-adjusted, no hyphenation)."""
    src = gzip.decompress(path.read_bytes())
    res = subprocess.run(
        ["groff", "-k", "-Tutf8", "-man", "-P-cbou", "-rLL=90n", "-rHY=0", "-dAD=l"],
        input=src,
        capture_output=True,
        timeout=60,
    )
    lines = res.stdout.decode("utf-8", "replace").splitlines()
    if len(lines) > 2:  # drop the running header and footer lines
        lines = lines[1:-1]
    out = []
    for line in lines:
        stripped = line.lstrip(" ")
        indent = max(0, len(line) - len(stripped) - 7)  # man's body indent is 7 columns
        out.append(" " * indent + re.sub(r"(?<=\S) {2,}(?=\S)", " ", stripped))
    return "\n".join(out)


def read_file(args: tuple[str, str]) -> str:
    """Plain text of one source file (``kind`` decides how it is read)."""
    kind, path = args
    p = Path(path)
    try:
        if kind == "man":
            return man_to_text(p)
        if kind == "text_gz":
            return gzip.decompress(p.read_bytes()).decode("utf-8", "replace")
        raw = p.read_text("utf-8", errors="replace")
        if kind == "html":
            return html_to_text(raw)
        return raw
    except Exception as e:  # a broken file should not stop the build
        print(f"  skipped {p.name}: {e}", file=sys.stderr)
        return ""


# --------------------------------------------------------------------------------------------
# Cleaning, filtering, chunking
# --------------------------------------------------------------------------------------------

EN_STOPWORDS = {
    "the", "and", "of", "to", "a", "in", "is", "that", "for", "it", "with", "as", "on", "are", "be", "this", "by",
    "or", "not", "you", "can", "if", "from", "an",
}  # fmt: skip


def normalise(text: str) -> str:
    """Unicode NFC, unify newlines, strip trailing spaces, tabs->4 spaces (prose), at most 2 blank lines."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u00a0", " ").replace("\u200b", "")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def english_ratio(text: str) -> float:
    words = re.findall(r"[A-Za-z]+", text.lower())
    return sum(w in EN_STOPWORDS for w in words) / max(1, len(re.findall(r"\w+", text)))


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def norm_key(text: str) -> str:
    return hashlib.sha1(re.sub(r"\s+", " ", text.strip().lower()).encode()).hexdigest()


def python_blocks(text: str) -> list[str]:
    """Split a Python file at top-level statements that follow a blank line (defs, classes, ...)."""
    blocks, cur = [], []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if (
            cur
            and line
            and not line[0].isspace()
            and i > 0
            and not lines[i - 1].strip()
            and not line.startswith((")", "]", "}", "#"))
        ):
            blocks.append("\n".join(cur).strip("\n"))
            cur = []
        cur.append(line)
    if cur:
        blocks.append("\n".join(cur).strip("\n"))
    return [b for b in blocks if b.strip()]


def chunk(blocks: list[str], rng: random.Random) -> list[str]:
    """Group consecutive blocks into documents of ``CHUNK_MIN..CHUNK_MAX`` characters (hard max ``CHUNK_HARD_MAX``)."""
    pieces: list[str] = []
    for b in blocks:  # split over-long blocks by lines
        while len(b) > CHUNK_HARD_MAX:
            cut = b.rfind("\n", 0, CHUNK_HARD_MAX)
            cut = cut if cut > CHUNK_MIN else CHUNK_HARD_MAX
            pieces.append(b[:cut])
            b = b[cut:].lstrip("\n")
        pieces.append(b)
    docs, cur, size, target = [], [], 0, rng.randint(CHUNK_MIN, CHUNK_MAX)
    for p in pieces:
        if cur and size + len(p) > target:
            docs.append("\n\n".join(cur))
            cur, size, target = [], 0, rng.randint(CHUNK_MIN, CHUNK_MAX)
        cur.append(p)
        size += len(p) + 2
    if cur:
        if docs and size < CHUNK_MIN // 2 and len(docs[-1]) + size < CHUNK_HARD_MAX:
            docs[-1] = docs[-1] + "\n\n" + "\n\n".join(cur)
        else:
            docs.append("\n\n".join(cur))
    return docs


def good_python(text: str) -> bool:
    """Drop generated/data-heavy files: very long lines or mostly non-code."""
    lines = text.split("\n")
    if not lines or max(map(len, lines)) > 1000:
        return False
    return sum(map(len, lines)) / len(lines) < 90


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def build(sources: list[Source], workers: int = 2) -> tuple[list[dict], dict]:
    """Return the kept documents (dicts with text, source, lang, file) and per-source statistics."""
    rng = random.Random(SEED)
    seen_paragraphs: set[str] = set()
    seen_docs: set[str] = set()
    docs: list[dict] = []
    stats: dict[str, dict] = {}
    lang_chars: dict[str, int] = {}
    cat_chars = dict.fromkeys(CATEGORY_CHARS, 0)
    with ProcessPoolExecutor(workers) as pool:
        for src in sources:
            files = source_files(src)
            if src.kind == "python":
                files = [f for f in files if "/site-packages/" not in str(f) and "/lib2to3/tests/data" not in str(f)]
            texts = list(pool.map(read_file, [(src.kind, str(f)) for f in files], chunksize=16))
            order = list(range(len(files)))
            rng.shuffle(order)  # so that a cap keeps a random subset of files, not the first ones
            st = stats.setdefault(
                src.name,
                dict(
                    package=src.package,
                    lang=src.lang,
                    license=src.license,
                    files=len(files),
                    docs=0,
                    chars=0,
                    dropped_paragraphs=0,
                    dropped_english=0,
                    dropped_dup_docs=0,
                ),
            )
            cat = category(src.lang)
            for i in order:
                text = normalise(texts[i])
                if src.kind == "python":
                    if not good_python(text):
                        continue
                    blocks = python_blocks(text)
                else:
                    blocks = []
                    for para in paragraphs(text):
                        if not re.search(r"\w", para):  # empty list bullets, rules, stray punctuation
                            continue
                        key = norm_key(para)
                        if len(para) >= 40 and key in seen_paragraphs:  # boilerplate / repeated / untranslated
                            st["dropped_paragraphs"] += 1
                            continue
                        seen_paragraphs.add(key)
                        if src.lang != "en" and len(para) >= 80 and english_ratio(para) > 0.15:
                            st["dropped_english"] += 1
                            continue
                        blocks.append(para)
                for doc in chunk(blocks, rng):
                    if len(doc) < MIN_DOC_CHARS:
                        continue
                    key = norm_key(doc)
                    if key in seen_docs:
                        st["dropped_dup_docs"] += 1
                        continue
                    lang_cap = PER_LANG_CHARS * SCRIPT_CAP_SCALE.get(src.lang, 1.0) if cat == "other" else None
                    if (
                        cat_chars[cat] >= CATEGORY_CHARS[cat]
                        or (lang_cap and lang_chars.get(src.lang, 0) >= lang_cap)
                        or (src.max_frac and st["chars"] >= src.max_frac * (lang_cap or CATEGORY_CHARS[cat]))
                    ):
                        break
                    seen_docs.add(key)
                    docs.append(dict(text=doc, source=src.name, lang=src.lang, file=files[i].name + f"@{src.name}"))
                    st["docs"] += 1
                    st["chars"] += len(doc)
                    cat_chars[cat] += len(doc)
                    lang_chars[src.lang] = lang_chars.get(src.lang, 0) + len(doc)
            print(
                f"{src.name:28s} files={len(files):5d} docs={st['docs']:6d} chars={st['chars']:>11,d} "
                f"[{cat}: {cat_chars[cat]:,}]",
                flush=True,
            )
    return docs, stats


def split(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Train/validation split by source file (every chunk of a file lands on the same side), seeded."""
    files = sorted({d["file"] for d in docs})
    rng = random.Random(SEED)
    val_files = set(rng.sample(files, k=max(1, round(VAL_FRACTION * len(files)))))
    train = [d for d in docs if d["file"] not in val_files]
    val = [d for d in docs if d["file"] in val_files]
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def write_parquet(docs: list[dict], path: Path) -> None:
    table = pa.table({"text": [d["text"] for d in docs]})
    pq.write_table(table, path, compression="zstd", compression_level=19, row_group_size=2000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-fetch", action="store_true", help="reuse cached downloads, do not call apt-get/pip")
    ap.add_argument("--out", type=Path, default=data_dir() / "corpus")
    args = ap.parse_args()
    if not args.no_fetch:
        fetch(SOURCES)
    docs, stats = build(SOURCES)
    train, val = split(docs)
    args.out.mkdir(parents=True, exist_ok=True)
    write_parquet(train, args.out / "train.parquet")
    write_parquet(val, args.out / "validation.parquet")
    for name, part in (("train", train), ("validation", val)):
        for d in part:
            stats[d["source"]][f"{name}_docs"] = stats[d["source"]].get(f"{name}_docs", 0) + 1
            stats[d["source"]][f"{name}_chars"] = stats[d["source"]].get(f"{name}_chars", 0) + len(d["text"])
    summary = dict(
        seed=SEED,
        val_fraction=VAL_FRACTION,
        train_docs=len(train),
        validation_docs=len(val),
        train_chars=sum(len(d["text"]) for d in train),
        validation_chars=sum(len(d["text"]) for d in val),
        sources=stats,
    )
    (args.out / "stats.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    # Where each document came from (one row per document, in the order of the split's parquet file);
    # handy for interpreting features, and for the token shares in the data card.
    rows = [
        (name, i, d["source"], d["lang"])
        for name, part in (("train", train), ("validation", val))
        for i, d in enumerate(part)
    ]
    pq.write_table(
        pa.table({k: list(v) for k, v in zip(["split", "row", "source", "lang"], zip(*rows))}),
        args.out / "sources.parquet",
        compression="zstd",
    )
    print(
        f"train: {len(train):,} docs, {summary['train_chars']:,} chars; "
        f"validation: {len(val):,} docs, {summary['validation_chars']:,} chars -> {args.out}"
    )


if __name__ == "__main__":
    main()
