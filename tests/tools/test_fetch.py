"""The fetch tool against a local server: extraction, citations, robots.txt, limits and
the address guard (which refuses loopback unless a test names ``localhost``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.core.events import PageFetched
from forgeline.tools.addresses import AddressPolicy
from forgeline.tools.calls import ToolCalls
from forgeline.tools.config import FetchConfig
from forgeline.tools.fetch import Fetcher, FetchError
from tests.tools.peers import Peer, Reply

HTML = {"Content-Type": "text/html; charset=utf-8"}
FIXED = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)

PARAGRAPHS = [
    "The tomlkit library keeps comments, whitespace and the order of keys when it reads "
    "and writes a TOML document, so a program can change one value and leave the rest of "
    "the file exactly as its author wrote it.",
    "To change a value, parse the document with tomlkit.parse, assign to the key as you "
    "would in a dictionary, and write the result back with tomlkit.dumps; the comments "
    "next to the key stay where they were.",
    "Tables can be created with tomlkit.table and arrays of tables with tomlkit.aot, and "
    "both keep their formatting when the document is written out again afterwards.",
]

ARTICLE = f"""<!DOCTYPE html>
<html><head><title>Editing TOML with tomlkit</title>
<meta property="og:title" content="Editing TOML with tomlkit"></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/blog">Blog</a></li>
<li><a href="/shop">Shop our merchandise</a></li></ul></nav>
<div class="cookie-banner">We use cookies to improve your experience. Accept all cookies.</div>
<main><article>
<h1>Editing TOML with tomlkit</h1>
{"".join(f"<p>{p}</p>" for p in PARAGRAPHS)}
</article></main>
<aside class="sidebar"><h3>Popular posts</h3><ul><li><a href="/x">Ten tips for YAML</a></li>
</ul></aside>
<footer><p>Copyright 2026 Example Corp. All rights reserved.</p>
<a href="/privacy">Privacy policy</a></footer>
</body></html>"""


def config(**values: object) -> FetchConfig:
    return FetchConfig.model_validate({"private_hosts": ["localhost"], "timeout": 3, **values})


def local(peer: Peer, path: str) -> str:
    return f"http://localhost:{peer.port}{path}"


async def test_main_text_and_citation(peer: Peer) -> None:
    peer.route("GET /post", Reply(200, ARTICLE, HTML))
    calls = ToolCalls()
    fetcher = Fetcher(config(), recorder=calls, clock=lambda: FIXED)

    page = await fetcher.fetch(local(peer, "/post"))

    for paragraph in PARAGRAPHS:
        assert paragraph in " ".join(page.text.split())
    for boilerplate in ("Shop our merchandise", "cookies", "Copyright", "Ten tips for YAML"):
        assert boilerplate not in page.text
    assert page.citation.title == "Editing TOML with tomlkit"
    assert page.citation.url == local(peer, "/post")
    assert page.citation.fetched_at == FIXED
    assert page.citation.reference() == (
        f"Editing TOML with tomlkit. <{local(peer, '/post')}> (fetched 2026-03-04 05:06 UTC)"
    )
    [record] = calls.records
    assert isinstance(record, PageFetched)
    assert record.status == 200 and record.title == page.citation.title
    assert record.chars == len(page.text) and record.error is None
    assert peer.requests[0].headers["user-agent"] == "forgeline-research/0.1"


async def test_plain_text_page(peer: Peer) -> None:
    peer.route(
        "GET /notes.txt",
        Reply(200, "Release notes\n\nVersion 2 adds X.", {"Content-Type": "text/plain"}),
    )
    page = await Fetcher(config()).fetch(local(peer, "/notes.txt"))
    assert page.citation.title == "Release notes"
    assert "Version 2 adds X." in page.text


async def test_redirect_is_followed_and_cited_at_its_end(peer: Peer) -> None:
    peer.route("GET /old", Reply(301, "", {"Location": "/post"}))
    peer.route("GET /post", Reply(200, ARTICLE, HTML))
    page = await Fetcher(config()).fetch(local(peer, "/old"))
    assert page.citation.url == local(peer, "/post")


async def test_robots_txt_that_forbids_is_honoured(peer: Peer) -> None:
    peer.route(
        "GET /robots.txt",
        Reply(200, "User-agent: *\nDisallow: /private/\n", {"Content-Type": "text/plain"}),
    )
    peer.route("GET /private/post", Reply(200, ARTICLE, HTML))
    peer.route("GET /post", Reply(200, ARTICLE, HTML))
    calls = ToolCalls()
    fetcher = Fetcher(config(), recorder=calls)

    with pytest.raises(FetchError, match=r"robots\.txt forbids"):
        await fetcher.fetch(local(peer, "/private/post"))
    await fetcher.fetch(local(peer, "/post"))

    assert [r.path for r in peer.requests] == ["/robots.txt", "/post"]
    assert isinstance(calls.records[0], PageFetched) and "robots" in (calls.records[0].error or "")
    # with robots off, the page is fetched
    await Fetcher(config(robots=False)).fetch(local(peer, "/private/post"))


async def test_robots_txt_server_error_forbids_everything(peer: Peer) -> None:
    peer.route("GET /robots.txt", Reply(503, "busy"))
    peer.route("GET /post", Reply(200, ARTICLE, HTML))
    with pytest.raises(FetchError, match="robots"):
        await Fetcher(config()).fetch(local(peer, "/post"))


async def test_redirect_to_loopback_is_refused(peer: Peer) -> None:
    # localhost is allowed by name; the redirect's 127.0.0.1 is not
    peer.route("GET /go", Reply(302, "", {"Location": f"http://127.0.0.1:{peer.port}/secret"}))
    peer.route("GET /secret", Reply(200, "admin panel", {"Content-Type": "text/plain"}))
    with pytest.raises(FetchError, match=r"127\.0\.0\.1 .*refused.*allow_private"):
        await Fetcher(config(robots=False)).fetch(local(peer, "/go"))
    assert [r.path for r in peer.requests] == ["/go"]


async def test_name_resolving_to_loopback_is_refused(peer: Peer) -> None:
    peer.route("GET /post", Reply(200, ARTICLE, HTML))
    with pytest.raises(FetchError, match=r"localhost resolves to 127\.0\.0\.1"):
        await Fetcher(FetchConfig()).fetch(local(peer, "/post"))
    assert peer.requests == []
    # allowed when configured
    await Fetcher(FetchConfig(allow_private=True)).fetch(f"{peer.url}/post")


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),
        ("224.0.0.1", True),
        ("93.184.215.14", False),
        ("2606:4700::1111", False),
    ],
)
def test_address_policy(address: str, refused: bool) -> None:
    assert AddressPolicy().refuses("example.org", address) is refused
    assert AddressPolicy(allow_private=True).refuses("example.org", address) is False


async def test_oversized_page_is_refused(peer: Peer) -> None:
    peer.route("GET /big", Reply(200, "x" * 5_000, HTML))
    with pytest.raises(FetchError, match="5,000 bytes, more than the limit of 1,000"):
        await Fetcher(config(max_bytes=1_000)).fetch(local(peer, "/big"))


async def test_oversized_page_without_length_is_cut_off(peer: Peer) -> None:
    peer.route("GET /big", Reply(200, "<p>" + "x" * 50_000 + "</p>", HTML, length=False))
    with pytest.raises(FetchError, match="more than the limit of 1,000 bytes"):
        await Fetcher(config(max_bytes=1_000)).fetch(local(peer, "/big"))


async def test_other_content_types_are_refused(peer: Peer) -> None:
    peer.route("GET /file.zip", Reply(200, b"PK\x03\x04", {"Content-Type": "application/zip"}))
    with pytest.raises(FetchError, match="application/zip, not a page"):
        await Fetcher(config()).fetch(local(peer, "/file.zip"))


async def test_slow_page_times_out(peer: Peer) -> None:
    peer.route("GET /slow", Reply(200, ARTICLE, HTML, delay=2))
    with pytest.raises(FetchError, match=r"did not answer within 1s \(\[fetch\] timeout\)"):
        await Fetcher(config(timeout=1)).fetch(local(peer, "/slow"))


async def test_redirect_loop_is_bounded(peer: Peer) -> None:
    peer.route("GET /a", Reply(302, "", {"Location": "/b"}))
    peer.route("GET /b", Reply(302, "", {"Location": "/a"}))
    with pytest.raises(FetchError, match="more than 3 redirects"):
        await Fetcher(config(max_redirects=3, robots=False)).fetch(local(peer, "/a"))
    assert len(peer.requests) == 4


@pytest.mark.parametrize(
    ("url", "message"),
    [("file:///etc/passwd", "only http and https"), ("ftp://example.org/x", "not ftp")],
)
async def test_other_schemes_are_refused(url: str, message: str) -> None:
    with pytest.raises(FetchError, match=message):
        await Fetcher(config()).fetch(url)


async def test_http_error_and_empty_page(peer: Peer) -> None:
    peer.route("GET /gone", Reply(404, "nope", HTML))
    peer.route("GET /empty", Reply(200, "<html><body></body></html>", HTML))
    with pytest.raises(FetchError, match="HTTP 404"):
        await Fetcher(config()).fetch(local(peer, "/gone"))
    with pytest.raises(FetchError, match="no main text"):
        await Fetcher(config()).fetch(local(peer, "/empty"))


async def test_agent_fetches_a_page(peer: Peer) -> None:
    peer.route("GET /post", Reply(200, ARTICLE, HTML))
    calls = ToolCalls()
    fetcher = Fetcher(config(max_chars=500), recorder=calls)
    returned: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        parts = [p for m in messages for p in m.parts if p.part_kind == "tool-return"]
        if parts:
            returned.extend(str(p.content) for p in parts)
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(parts=[ToolCallPart("fetch_page", {"url": local(peer, "/post")})])

    await Agent(FunctionModel(model), toolsets=[fetcher.toolset()]).run("read it")

    assert returned[0].startswith(
        f"Title: Editing TOML with tomlkit\nURL: {local(peer, '/post')}\n"
    )
    assert returned[0].rstrip().endswith("[...]")
    assert len(calls.records) == 1
