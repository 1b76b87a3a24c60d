"""`from_url`, URL masking and the options every scheme shares."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

import kvstores
from kvstores import BackendUnavailableError, InMemoryByteStore, LocalFileStore, from_url
from kvstores.backend import (
    is_secret_name,
    mask_secrets,
    mask_url,
    require,
    secret_values,
    split_common_options,
    store_class,
)
from kvstores.errors import ConfigurationError, KVStoreError


def test_import_needs_no_optional_dependency() -> None:
    code = textwrap.dedent(
        """
        import sys
        blocked = ("sqlalchemy", "redis", "pymongo", "cassandra", "astrapy", "langchain_core",
                   "hypothesis", "pytest", "psycopg", "pymysql")
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in blocked:
                    raise ImportError(f"blocked {name}")
        sys.meta_path.insert(0, Block())
        import kvstores
        store = kvstores.from_url("memory://")
        store.mset([("k", b"v")])
        assert store.mget(["k"]) == [b"v"]
        print(sorted(m for m in sys.modules if m.split(".")[0] in blocked))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_memory_and_file_urls(tmp_path: Path) -> None:
    memory = from_url("memory://")
    assert type(memory) is InMemoryByteStore
    file_store = from_url(f"file://{tmp_path}")
    assert isinstance(file_store, LocalFileStore)
    assert file_store.root == tmp_path


def test_common_options_from_query_and_kwargs(tmp_path: Path) -> None:
    store = from_url(f"file://{tmp_path}?namespace=emb&ttl=60&timeout=3")
    assert isinstance(store, LocalFileStore)
    assert (store.namespace, store.ttl) == ("emb", 60.0)
    overridden = from_url("memory://?namespace=q&ttl=5", namespace="kw", ttl=7)
    assert isinstance(overridden, InMemoryByteStore)
    assert (overridden.namespace, overridden.ttl) == ("kw", 7.0)


@pytest.mark.parametrize("query", ["ttl=abc", "ttl=0", "ttl=-1", "timeout=nan", "ttl=inf"])
def test_bad_common_options(query: str) -> None:
    with pytest.raises(ValueError, match=r"ttl|timeout"):
        from_url(f"memory://?{query}")


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown kvstores URL scheme 'nope'.*file.*memory"):
        from_url("nope://x")


@pytest.mark.parametrize("url", ["", "memory", "/tmp/x", "no scheme"])
def test_not_a_url(url: str) -> None:
    with pytest.raises(ValueError, match="scheme"):
        from_url(url)


def test_memory_url_rejects_extra_parts() -> None:
    with pytest.raises(ValueError, match="memory://"):
        from_url("memory://host/path")
    with pytest.raises(ConfigurationError, match="'table'"):
        from_url("memory://?table=x")


def test_missing_driver_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r'pip install "kvstores\[redis\]"'):
        require("kvstores_no_such_driver", "redis")


def test_entry_point_backend(tmp_path: Path) -> None:
    # A third-party backend installed as a distribution with a kvstores.backends entry point.
    package = tmp_path / "site" / "kvplugin.py"
    package.parent.mkdir()
    package.write_text(
        textwrap.dedent(
            """
            from kvstores.memory import InMemoryByteStore
            class PluginStore(InMemoryByteStore):
                @classmethod
                def from_url(cls, url, **options):
                    store = cls(namespace=options.get("namespace"))
                    store.url = url
                    return store
            """
        )
    )
    dist = tmp_path / "site" / "kvplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kvplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kvstores.backends]\nplug = kvplugin:PluginStore\n")
    code = textwrap.dedent(
        """
        import kvstores
        store = kvstores.from_url("plug://host/x?namespace=n&opt=1")
        print(type(store).__name__, store.namespace, store.url, "plug" in kvstores.known_schemes())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(package.parent)},
    )
    assert out.stdout.split() == ["PluginStore", "n", "plug://host/x?opt=1", "True"]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:s3cret@host:6379", "redis://:***@host:6379"),
        ("postgresql+psycopg://u:p%40ss@h/db?sslmode=require", "postgresql+psycopg://u:***@h/db?sslmode=require"),
        ("astradb://h/ks?collection=c&token=AstraCS:abc", "astradb://h/ks?collection=c&token=***"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("memory://", "memory://"),
    ],
)  # fmt: skip
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_secrets_in_driver_messages() -> None:
    url = "mysql://root:hunter2@db/x?token=AstraCS:t0k"
    text = "connect failed for root:hunter2@db (token AstraCS:t0k)"
    assert mask_secrets(text, url) == "connect failed for root:***@db (token ***)"


def test_backend_unavailable_masks_and_chains() -> None:
    cause = ConnectionRefusedError("refused by redis://u:pw@h:1 with pw")
    with pytest.raises(BackendUnavailableError) as caught:
        raise BackendUnavailableError("redis", "redis://u:pw@h:1/0", cause) from cause
    assert "pw" not in str(caught.value)
    assert str(caught.value).startswith("redis backend unavailable at redis://u:***@h:1/0")
    assert caught.value.__cause__ is cause
    assert isinstance(caught.value, kvstores.KVStoreError)
    assert isinstance(caught.value, ConnectionError)


SPECIAL = "Sk0123456789:@/%+ #?&=é☃x"  # a password that needs percent-encoding in a URL


@pytest.mark.parametrize(
    "spelled",
    [
        SPECIAL,  # decoded, as the driver got it
        quote(SPECIAL, safe=""),  # as in the URL
        quote_plus(SPECIAL, safe=""),
        repr(SPECIAL)[1:-1],
        repr(SPECIAL.encode())[2:-1],  # a driver quoting the bytes it refuses
        json.dumps(SPECIAL)[1:-1],
    ],
)
def test_mask_secrets_masks_every_spelling_of_the_password(spelled: str) -> None:
    url = f"mysql+pymysql://app:{quote(SPECIAL, safe='')}@db/x"
    masked = mask_secrets(f"Access denied ({spelled}) for app", url)
    assert masked == "Access denied (***) for app"
    assert "Sk0123456789" not in masked


def test_mask_secrets_masks_the_secrets_given_apart() -> None:
    url = "astradb://h/ks?collection=c"
    assert mask_secrets("token AstraCS:abc:def refused", url, ["AstraCS:abc:def"]) == (
        "token *** refused"
    )


@pytest.mark.parametrize(
    "name",
    ["password", "sslpassword", "tlsCertificateKeyFilePassword", "ssl_password", "token",
     "client_secret", "api_key", "access_token"],
)  # fmt: skip
def test_credential_parameters_are_masked_by_name(name: str) -> None:
    url = f"postgresql://u@h/db?application_name=app&{name}=Sk0123456789"
    assert mask_url(url) == f"postgresql://u@h/db?application_name=app&{name}=***"
    assert mask_secrets(f"failed: {name}=Sk0123456789", url) == f"failed: {name}=***"
    assert is_secret_name(name)
    assert secret_values({name: "v", "application_name": "app", "port": 1}) == ["v"]


@pytest.mark.parametrize("name", ["application_name", "sslmode", "authSource", "tokenize"])
def test_other_parameters_are_not_credentials(name: str) -> None:
    assert not is_secret_name(name)


def test_split_common_options_keeps_the_rest() -> None:
    url, options = split_common_options("sqlite:///x.db?table=t&namespace=n&ttl=2&a=%2F")
    assert url == "sqlite:///x.db?table=t&a=/"
    assert options == {"namespace": "n", "ttl": 2.0}


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("memory://?namespce=a", {}),
        ("memory://", {"namespce": "a"}),
        ("file://{tmp}?namespce=a", {}),
        ("file://{tmp}", {"namespce": "a"}),
        ("file://{tmp}?ttl=5&colour=red", {}),
    ],
)
def test_typo_in_an_option_is_an_error(tmp_path: Path, url: str, options: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_url(url.format(tmp=tmp_path), **options)
    message = str(caught.value)
    assert "namespce" in message or "colour" in message
    assert "namespace" in message  # the known options are listed
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, KVStoreError)
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_typo_suggests_the_known_option() -> None:
    with pytest.raises(ConfigurationError, match=r"did you mean 'namespace'\?"):
        from_url("memory://?namespce=a")


@pytest.mark.parametrize("scheme", ["nope", "oracle", "mssql", "mssql+pyodbc"])
def test_unknown_or_unsupported_scheme_is_a_kvstore_error(scheme: str) -> None:
    with pytest.raises(ConfigurationError, match="known schemes") as caught:
        from_url(f"{scheme}://host/db")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, KVStoreError)


def test_known_schemes_all_build_a_store() -> None:
    """Every listed scheme is one a store accepts (no scheme listed only to be refused)."""
    assert {"oracle", "mssql"}.isdisjoint(kvstores.known_schemes())
    for scheme in kvstores.known_schemes():
        module_name = store_class(scheme).__module__
        assert module_name.startswith("kvstores."), scheme


@pytest.mark.parametrize("namespace", ["", "x" * 257, "a\x00b"])
def test_invalid_namespace_is_a_kvstore_error(namespace: str) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        InMemoryByteStore(namespace=namespace)


def test_file_store_rooted_at_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"x")
    for root in (not_a_dir, not_a_dir / "below"):
        with pytest.raises(ConfigurationError, match="must be a directory"):
            LocalFileStore(root)
        with pytest.raises(ConfigurationError, match="must be a directory"):
            from_url(f"file://{root}")
    assert not_a_dir.read_bytes() == b"x"


@pytest.mark.parametrize(
    ("url", "text", "masked"),
    [
        (
            "postgresql://admin:admin@db.example/admin",
            "connection to postgresql://admin:admin@db.example/admin failed: password "
            'authentication failed for user "admin" (password=admin)',
            "connection to postgresql://admin:***@db.example/admin failed: password "
            'authentication failed for user "admin" (password=***)',
        ),
        (
            "mysql+pymysql://app:app2024@h/app2024_db",
            "Unknown database 'app2024_db' for app:app2024@h",
            "Unknown database 'app2024_db' for app:***@h",
        ),
    ],
)
def test_mask_secrets_masks_only_the_password(url: str, text: str, masked: str) -> None:
    """A password that also occurs in the user or database name masks only the password."""
    assert mask_secrets(text, url) == masked


def test_require_names_a_package_when_no_extra_brings_it() -> None:
    with pytest.raises(ImportError, match="pip install aiosqlite"):
        require("kvstores_no_such_module", package="aiosqlite")


def test_a_short_password_is_masked_only_where_it_stands_alone() -> None:
    url = "postgresql://u:p@h/db"
    text = "greenlet_spawn failed for u:p@h (password=p) p"
    assert mask_secrets(text, url) == "greenlet_spawn failed for u:***@h (password=***) ***"


def test_a_driver_name_with_an_underscore_is_a_scheme(tmp_path: Path) -> None:
    pytest.importorskip("aiosqlite")
    store = from_url(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    with store:
        store.mset([("k", b"v")])
        assert store.mget(["k"]) == [b"v"]
