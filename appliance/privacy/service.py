"""`Privacy`: the privacy engine's parts wired from the config, one per process and database."""

from __future__ import annotations

from appliance.config import Config
from appliance.privacy.audit import AuditLog
from appliance.privacy.breach import BreachRegister
from appliance.privacy.dnc import DncList
from appliance.privacy.files import FileVault
from appliance.privacy.keyring import Keyring
from appliance.privacy.master import KeyFile, MasterKeySource, PassphraseKey
from appliance.privacy.review import ReviewQueue
from appliance.privacy.subjects import Subjects
from appliance.store import Database


def master_key_source(cfg: Config) -> MasterKeySource:
    p = cfg.privacy
    if p.key_source == "passphrase":
        if p.passphrase_file is None:  # the config loader already refuses this
            raise ValueError("privacy.passphrase_file is required")
        return PassphraseKey(cfg.state_dir / "keys" / "master.scrypt", p.passphrase_file)
    return KeyFile(p.master_key_path(cfg.state_dir))


class Privacy:
    def __init__(self, cfg: Config, db: Database, source: MasterKeySource | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.keyring = Keyring(db, source or master_key_source(cfg))
        self.audit = AuditLog(db, self.keyring)
        self.subjects = Subjects(
            db,
            self.keyring,
            region=cfg.privacy.default_region,
            extensions=[e.number for e in cfg.extensions],
            own_numbers=[ln.extension for ln in cfg.lines],
        )
        self.dnc = DncList(db, self.keyring, self.subjects, self.audit)
        self.files = FileVault(self.keyring)
        self.review = ReviewQueue(db, self.audit, region=cfg.privacy.default_region)
        self.breaches = BreachRegister(db, self.audit, region=cfg.privacy.default_region)
