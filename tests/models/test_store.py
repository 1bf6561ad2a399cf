import hashlib
import sys
from pathlib import Path

import pytest

from appliance.models.manifest import MANIFEST_PATH, ModelError, load_manifest
from appliance.models.store import ModelStore


def fake_manifest(tmp_path: Path, parts: list[bytes], sha: str | None = None) -> Path:
    pkg = tmp_path / "site" / "cv_fake_model_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    names = []
    for i, data in enumerate(parts):
        (pkg / "data" / f"w.part{i}").write_bytes(data)
        names.append(f'"cv_fake_model_pkg:data/w.part{i}"')
    whole = b"".join(parts)
    digest = sha or hashlib.sha256(whole).hexdigest()
    parts_list = ", ".join(names)
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        f"""
[profiles.cpu]
stt_live = "m"
stt_batch = "m"
llm = "m"
tts = "m"
vad = "m"

[[models]]
name = "m"
role = "stt"
language = "en"
format = "ctranslate2"
licence = "MIT"
devices = ["cpu"]
packages = []
files = [{{ name = "model.bin", size = {len(whole)}, sha256 = "{digest}", parts = [{{parts}}] }}]
""".replace("{parts}", parts_list)
    )
    sys.path.insert(0, str(tmp_path / "site"))
    return manifest


@pytest.fixture(autouse=True)
def _clean_sys_path():
    saved = list(sys.path)
    yield
    sys.path[:] = saved
    sys.modules.pop("cv_fake_model_pkg", None)


def test_real_manifest_is_consistent() -> None:
    m = load_manifest(MANIFEST_PATH)
    assert set(m.profiles) == {"cpu", "gpu"}
    assert {e.role for e in m.models.values()} == {"stt", "llm", "tts", "vad"}
    assert m.profile("cpu")["llm"].name == "smollm2-135m"
    for entry in m.models.values():
        assert entry.licence and entry.devices and entry.files
        assert all(f.size > 0 for f in entry.files)


def test_split_parts_are_joined_and_verified(tmp_path: Path) -> None:
    manifest = load_manifest(fake_manifest(tmp_path, [b"a" * 1000, b"b" * 10]))
    store = ModelStore(tmp_path / "models", manifest)
    entry = manifest.model("m")
    assert not store.quick_status(entry).installed
    seen: list[int] = []
    store.assemble(entry, seen.append)
    assert (tmp_path / "models" / "m" / "model.bin").read_bytes() == b"a" * 1000 + b"b" * 10
    assert store.verify(entry).installed
    assert sum(seen) == 1010
    assert store.file("m", "model.bin").exists()


def test_wrong_checksum_refuses_to_install(tmp_path: Path) -> None:
    manifest = load_manifest(fake_manifest(tmp_path, [b"data"], sha="0" * 64))
    store = ModelStore(tmp_path / "models", manifest)
    with pytest.raises(ModelError, match="sha256"):
        store.assemble(manifest.model("m"))
    assert not store.quick_status(manifest.model("m")).installed
    with pytest.raises(ModelError, match="callvault models install"):
        store.file("m", "model.bin")


def test_corruption_after_install_is_found_by_verify(tmp_path: Path) -> None:
    manifest = load_manifest(fake_manifest(tmp_path, [b"x" * 100, b"y" * 100]))
    store = ModelStore(tmp_path / "models", manifest)
    store.assemble(manifest.model("m"))
    path = tmp_path / "models" / "m" / "model.bin"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    status = store.verify(manifest.model("m"))
    assert not status.installed and "sha256" in status.problem


def test_manifest_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text('[[models]]\nname = "x"\nrole = "singer"\n')
    with pytest.raises(ModelError, match=r"models\[0\]\.role"):
        load_manifest(bad)
    bad.write_text('[profiles.cpu]\nstt_live = "nope"\n')
    with pytest.raises(ModelError, match=r"profiles\.cpu"):
        load_manifest(bad)
