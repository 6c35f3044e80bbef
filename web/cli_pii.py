"""`gongji pii status|rekey`: which encryption key seals the stored personal data, and re-encrypting it
under the active one (`workflows/rekey.py`), so a retired or leaked key can leave GONGJI_PII_KEYS.

To retire key k1: put a new key first (`GONGJI_PII_KEYS=k2:<new>,k1:<old>`), restart the processes (new
values are sealed with k2), run `gongji pii rekey` (it may run beside live traffic, and again after a stop),
check `gongji pii status` says nothing is left under k1, then drop k1 and restart again. Counts only: no value
is ever printed."""
from __future__ import annotations

import click

from models.settings import Settings


def _db():
    from models import db as models_db
    return models_db.from_settings(Settings.from_env())[1]


@click.group()
def pii() -> None:
    """Encryption keys of personal data: what each seals, and re-encrypting under the active one."""


@pii.command("status")
def status() -> None:
    """Rows per encrypted column and key id; the active key; the keys nothing depends on any more."""
    from models.crypto import active_key_id
    from workflows import rekey

    settings, counts = Settings.from_env(), rekey.key_ids(_db())
    for column, by_key in counts.items():
        click.echo(f"{column:<36} " + (", ".join(f"{k} {n}" for k, n in sorted(by_key.items())) or "empty"))
    used = {k for by_key in counts.values() for k in by_key}
    click.echo(f"active key: {active_key_id()}; no longer needed: "
               f"{', '.join(sorted(set(settings.pii_keys) - used - {active_key_id()})) or 'none'}")


@pii.command("rekey")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="rows per transaction")
def rekey_command(batch: int) -> None:
    """Re-encrypt every value not sealed with the active key (safe beside live traffic; may run again)."""
    from tqdm import tqdm

    from models.crypto import active_key_id
    from workflows import rekey

    db = _db()
    with tqdm(unit="row", desc="re-encrypted", disable=None) as bar:
        done = rekey.rekey(db, batch=batch, progress=lambda _column, n: bar.update(n))
    for column, n in done.items():
        click.echo(f"{column:<36} {n} re-encrypted")
    active = active_key_id()
    left = {c: sum(n for k, n in by_key.items() if k != active) for c, by_key in rekey.key_ids(db).items()}
    if any(left.values()):  # written meanwhile by a process still sealing with an older key
        raise click.ClickException("some values are still under an older key (a process not restarted with the "
                                   f"new GONGJI_PII_KEYS?): {', '.join(c for c, n in left.items() if n)}")
    click.echo("every value is sealed with the active key")
