"""Model packages: the manifest, offline install/verify, and which device each model runs on."""

from appliance.models.manifest import Manifest, ModelEntry, ModelError, load_manifest

__all__ = ["Manifest", "ModelEntry", "ModelError", "load_manifest"]
