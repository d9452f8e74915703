"""The requests of the agent benchmark, each with acceptance tests the agents never see.

A request is written the way a user would ask, and it names the public interface the
hidden tests use (file names, functions, classes, command-line arguments). The hidden
tests are ``hidden/test_<name>.py``; ``reference/<name>/`` holds one solution that passes
them (the suite's own check that every request is buildable as stated, and the source of
the scripted model's answers). Neither is ever shown to the agents: they are copied into
a finished workspace only after its run.

The first five cover one request of each kind, so ``--requests 5`` is a balanced sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HERE = Path(__file__).resolve().parent
HIDDEN_DIR = HERE / "hidden"
REFERENCE_DIR = HERE / "reference"

Kind = Literal["function", "class", "cli", "store", "web"]
KINDS: tuple[Kind, ...] = ("function", "class", "cli", "store", "web")

STDLIB = "Use only the Python standard library, and include pytest tests."


@dataclass(frozen=True)
class BenchRequest:
    name: str
    kind: Kind
    request: str

    @property
    def hidden_tests(self) -> Path:
        return HIDDEN_DIR / f"test_{self.name}.py"

    @property
    def hidden_name(self) -> str:
        """The hidden tests' file name once copied into a workspace."""
        return f"test_hidden_{self.name}.py"

    def reference(self) -> dict[str, str]:
        """The reference solution's files, by path relative to the workspace."""
        root = REFERENCE_DIR / self.name
        return {
            str(path.relative_to(root)): path.read_text()
            for path in sorted(root.rglob("*.py"))
            if "__pycache__" not in path.parts
        }


def _r(name: str, kind: Kind, text: str) -> BenchRequest:
    return BenchRequest(name, kind, " ".join(text.split()) + " " + STDLIB)


SUITE: tuple[BenchRequest, ...] = (
    # --- one of each kind first
    _r(
        "slugify",
        "function",
        """Write a Python module slugify.py with a function slugify(text: str) -> str that
        turns a title into a URL slug: lower case, every run of characters that are not
        ASCII letters or digits becomes a single hyphen, and there is no hyphen at the start
        or the end. For example slugify("Hello, World!") == "hello-world" and
        slugify("!!!") == "".""",
    ),
    _r(
        "lru",
        "class",
        """Write lru.py with a class LRUCache(capacity: int). get(key, default=None) returns
        the key's value and marks the key as most recently used, or returns default when the
        key is missing. put(key, value) stores the value (an existing key is updated and
        becomes most recently used); when more than capacity keys are stored, the least
        recently used key is evicted. len(cache) is the number of keys, and `key in cache`
        works without changing the order. A capacity below 1 raises ValueError.""",
    ),
    _r(
        "todo",
        "cli",
        """Build a todo CLI, todo.py, that stores its items in todo.json in the current
        directory. `python todo.py add TEXT...` adds an item (the words joined by single
        spaces) and prints its number (1 for the first item); `python todo.py list` prints
        one line per item, like `1. [ ] milk`, with `[x]` for items that are done, and
        nothing when there are no items; `python todo.py done N` marks item N as done.""",
    ),
    _r(
        "kvstore",
        "store",
        """Write kvstore.py with a class KVStore(path) that keeps string keys and
        JSON-serialisable values in a JSON file at path (one JSON object mapping keys to
        values): get(key, default=None), set(key, value), delete(key) -> bool (True if the
        key existed) and keys() -> the keys as a sorted list. Every change is written to the
        file at once, a new KVStore on the same path sees the saved data, and a missing file
        is an empty store.""",
    ),
    _r(
        "health",
        "web",
        """Write a small web service, server.py, on http.server. It has a function
        make_server(host: str, port: int) that returns an http.server.HTTPServer (a
        ThreadingHTTPServer is fine) bound to that address but not yet serving; the caller
        runs serve_forever(). GET /health answers 200 with the JSON {"status": "ok"};
        GET /echo?msg=TEXT answers 200 with {"msg": TEXT} (URL-decoded); any other path
        answers 404 with {"error": "not found"}. Every response has Content-Type
        application/json. `python server.py --port N` serves on 127.0.0.1:N.""",
    ),
    # --- a module with functions
    _r(
        "roman",
        "function",
        """Write roman.py with to_roman(number: int) -> str and from_roman(text: str) -> int
        for the numbers 1 to 3999 in the usual subtractive notation (4 is IV, 9 is IX, 40 is
        XL, 1994 is MCMXCIV). to_roman raises ValueError for numbers outside 1..3999;
        from_roman raises ValueError for an empty string or any character other than
        I, V, X, L, C, D and M.""",
    ),
    _r(
        "wordfreq",
        "function",
        """Write wordfreq.py with top_words(text: str, n: int) -> list[tuple[str, int]]. Words
        are runs of the letters a-z, compared in lower case (so "Go" and "go" are one word,
        and punctuation separates words). Return the n most frequent words as (word, count)
        pairs, most frequent first, words with the same count in alphabetical order; fewer
        if there are fewer words, and [] for n = 0.""",
    ),
    _r(
        "intervals",
        "function",
        """Write intervals.py with merge(intervals: list[tuple[int, int]]) ->
        list[tuple[int, int]] that merges closed intervals (start <= end) which overlap or
        touch, and returns them sorted by start. The input may be in any order.
        merge([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)], merge([(1, 2), (2, 3)]) ==
        [(1, 3)], merge([(1, 2), (3, 4)]) == [(1, 2), (3, 4)], merge([]) == [].""",
    ),
    _r(
        "durations",
        "function",
        """Write durations.py with parse_duration(text: str) -> int, which returns the
        number of seconds of strings like "1h30m", "45s", "2h", "90m" or "1h2m3s" (the units
        h, m and s, in that order, each at most once, at least one of them, each after a
        whole number); anything else, such as "", "10", "1x" or "1s1h", raises ValueError.
        Also format_duration(seconds: int) -> str, the reverse, leaving out zero parts:
        format_duration(5400) == "1h30m", format_duration(60) == "1m",
        format_duration(0) == "0s".""",
    ),
    _r(
        "stats",
        "function",
        """Write stats.py with mean(values), median(values) and mode(values) for lists of
        numbers. The median of an even number of values is the mean of the two middle ones;
        mode returns the most common value, and the smallest of them on a tie. Each of the
        three raises ValueError for an empty list.""",
    ),
    _r(
        "caesar",
        "function",
        """Write caesar.py with encode(text: str, shift: int) -> str, the Caesar cipher:
        every ASCII letter moves shift places along the alphabet, wrapping around and keeping
        its case (encode("xyz", 3) == "abc"; shifts may be negative or larger than 26), and
        every other character stays as it is. Also decode(text: str, shift: int) -> str,
        which undoes encode with the same shift.""",
    ),
    # --- a class with an API
    _r(
        "bank",
        "class",
        """Write bank.py with a class Account(owner: str, balance: float = 0) with
        deposit(amount), withdraw(amount) and a read-only property balance (assigning to it
        raises AttributeError). Amounts must be positive, otherwise ValueError. Withdrawing
        more than the balance raises InsufficientFunds, an exception class defined in
        bank.py (a subclass of Exception), and leaves the balance unchanged. Also a module
        function transfer(source: Account, target: Account, amount) that moves money
        between two accounts, all or nothing.""",
    ),
    _r(
        "vector",
        "class",
        """Write vector.py with a class Vector(x, y) for 2D vectors, with attributes x and y:
        v + w and v - w, v * k and k * v for a number k, == and != comparing both
        coordinates, abs(v) its length (abs(Vector(3, 4)) == 5) and
        repr(Vector(1, 2)) == "Vector(1, 2)".""",
    ),
    _r(
        "inventory",
        "class",
        """Write inventory.py with a class Inventory for a stock of items: add(item: str,
        quantity: int = 1); remove(item: str, quantity: int = 1), which raises KeyError for
        an item that is not in stock and ValueError when removing more than there is;
        count(item) -> int (0 for unknown items); items() -> a dict of item to quantity
        (items whose quantity drops to 0 are left out); total() -> the sum of all
        quantities. A quantity that is not positive raises ValueError.""",
    ),
    _r(
        "eventbus",
        "class",
        """Write events.py with a class EventBus: subscribe(event: str, handler) registers a
        callable for the event and returns a function that unsubscribes it again;
        publish(event: str, *args, **kwargs) calls the event's handlers in the order they
        subscribed, with those arguments, and returns how many handlers it called (0 when
        there are none).""",
    ),
    _r(
        "ratelimit",
        "class",
        """Write ratelimit.py with a class RateLimiter(limit: int, window: float,
        clock=time.monotonic), a sliding-window rate limiter. allow() returns True and counts
        the call when fewer than limit calls were allowed in the last window seconds,
        otherwise it returns False (refused calls do not count). A call allowed at time t
        stops counting once clock() >= t + window. clock is a function without arguments
        returning seconds, so tests can pass a fake clock.""",
    ),
    # --- small command-line programs
    _r(
        "wc",
        "cli",
        """Write wc.py: `python wc.py FILE...` prints, for each file, its number of lines
        (newline characters), words (runs separated by whitespace) and characters, then the
        file name, separated by single spaces, like `2 3 14 notes.txt`. With more than one
        file it ends with a line of the sums followed by `total`. A missing file prints
        `wc.py: NAME: No such file` to stderr, the other files are still counted, and the
        exit status is 1.""",
    ),
    _r(
        "calc",
        "cli",
        """Write calc.py, a calculator. evaluate(expression: str) evaluates integers with
        + - * / and parentheses, with the usual precedence and unary minus ("-3 + 5" is 2).
        A whole result is an int ("2 + 3 * 4" gives 14, "8 / 2" gives 4) and any other
        result a float ("7 / 2" gives 3.5). `python calc.py EXPRESSION` prints the result;
        for invalid input or a division by zero it prints a message starting with `error:`
        to stderr and exits with status 1.""",
    ),
    _r(
        "csv2json",
        "cli",
        """Write csv2json.py: `python csv2json.py FILE.csv` prints the CSV file (with a
        header row, and quoted fields as the csv module reads them) as a JSON array of
        objects, one per row, keyed by the header, all values strings, on one line as
        json.dumps writes it by default. `--indent N` prints it as json.dumps(rows,
        indent=N) does instead.""",
    ),
    _r(
        "tempconv",
        "cli",
        """Write tempconv.py with convert(value: float, from_unit: str, to_unit: str) ->
        float between the units "c" (Celsius), "f" (Fahrenheit) and "k" (Kelvin), and a
        command line `python tempconv.py VALUE --from UNIT --to UNIT` that prints
        round(result, 2): `python tempconv.py 100 --from c --to f` prints 212.0. An unknown
        unit is an error with a non-zero exit status.""",
    ),
    # --- JSON-file stores
    _r(
        "notes",
        "store",
        """Write notes.py with a class NoteStore(path) that keeps notes in a JSON file at
        path. add(title: str, body: str, tags: list[str] | None = None) -> int returns the
        new note's id: 1, 2, 3 ..., never reused, even after a delete and reopening the
        store. get(note_id) returns a dict with the keys id, title, body and tags (a list),
        or raises KeyError. search(text) returns the ids, in order, of the notes whose title
        or body contains text, ignoring case; by_tag(tag) the ids of the notes with that
        tag; delete(note_id) removes a note (KeyError if there is none). Every change is
        saved at once, and a new NoteStore on the same path sees it.""",
    ),
    _r(
        "contacts",
        "store",
        """Write contacts.py, a contacts book kept in a JSON file. `python contacts.py --db
        FILE add NAME EMAIL` adds a contact (adding an existing NAME replaces its email) and
        creates the file on the first add; `python contacts.py --db FILE find TEXT` prints
        `NAME <EMAIL>` for every contact whose name or email contains TEXT, ignoring case,
        sorted by name; `python contacts.py --db FILE remove NAME` removes the contact, or
        prints a message to stderr and exits with status 1 when there is no such
        contact.""",
    ),
    # --- small web services
    _r(
        "counter",
        "web",
        """Write counter_server.py, a web service on http.server with named counters kept in
        memory. make_server(host: str, port: int) returns an http.server.HTTPServer bound to
        that address but not yet serving (the caller runs serve_forever()); each server has
        its own counters. POST /counters/NAME adds one to counter NAME and answers 200 with
        {"name": NAME, "value": NEW_VALUE}; GET /counters/NAME answers 200 with
        {"name": NAME, "value": VALUE} (0 if it was never incremented); GET /counters
        answers 200 with an object of every counter, {NAME: VALUE, ...}; any other path
        answers 404 with {"error": "not found"}. Responses are JSON with Content-Type
        application/json.""",
    ),
    _r(
        "shortener",
        "web",
        """Write shortener.py, a URL shortener on http.server whose links are kept in a JSON
        file. make_server(host: str, port: int, db_path: str) returns an
        http.server.HTTPServer bound to that address but not yet serving. POST /shorten with
        a JSON body {"url": URL} answers 201 with the JSON {"code": CODE, "url": URL}, CODE
        being a short string of letters and digits; a body without a "url" starting with
        http:// or https:// answers 400. GET /CODE answers 302 with a Location header
        holding the URL, and 404 for an unknown code. A new server on the same db_path still
        knows the earlier codes.""",
    ),
)

BY_NAME: dict[str, BenchRequest] = {r.name: r for r in SUITE}


def select(requests: int | None = None, only: str | None = None) -> list[BenchRequest]:
    """The suite, or the named entries (``only``: comma-separated), or the first N."""
    chosen = list(SUITE)
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            raise ValueError(
                f"unknown request(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}"
            )
        chosen = [BY_NAME[n] for n in names]
    if requests is not None:
        chosen = chosen[:requests]
    return chosen
