"""The requests of the agent benchmark, each with acceptance tests the agents never see.

A request is written the way a user would ask, and it names the public interface the
hidden tests use (file names, functions, classes, command-line arguments). The hidden
tests are ``hidden/test_<name>.py``; ``reference/<name>/`` holds one solution that passes
them (the suite's own check that every request is buildable as stated, and the source of
the scripted model's answers). Neither is ever shown to the agents: they are copied into
a finished workspace only after its run.

The first five cover one request of each kind, so ``--requests 5`` is a balanced sample.
Three (``WITH_PACKAGES``, ``packages=...``) need packages from PyPI: a FastAPI service, a
``requests``-based client tested against a local server and a ``click`` command line. The
pipeline installs what the task declares (forgeline's checked install path); the hidden
tests run in the task's venv with the request's packages added. The last 16
(``HELD_OUT``, ``held_out=True``) were written before any prompt of the specification and
selection flow was tuned, and are kept out of every tuning loop: the harnesses report them
apart from the 24 tuned ones (``TUNED``, which holds no request that needs packages).
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
WITH = "Declare the packages it needs in requirements.txt, and include pytest tests."


@dataclass(frozen=True)
class BenchRequest:
    name: str
    kind: Kind
    request: str
    held_out: bool = False
    """Written after the tuned set and kept out of every prompt-tuning loop: figures for it
    are reported apart."""
    packages: tuple[str, ...] = ()
    """Packages from PyPI the request needs (its hidden tests import them)."""

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


def _r(name: str, kind: Kind, text: str, *, held_out: bool = False) -> BenchRequest:
    return BenchRequest(name, kind, " ".join(text.split()) + " " + STDLIB, held_out)


def _h(name: str, kind: Kind, text: str) -> BenchRequest:
    return _r(name, kind, text, held_out=True)


def _p(name: str, kind: Kind, text: str, packages: tuple[str, ...]) -> BenchRequest:
    return BenchRequest(name, kind, " ".join(text.split()) + " " + WITH, packages=packages)


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
    # --- requests that need packages from PyPI
    _p(
        "kv_fastapi",
        "web",
        """Write kv_fastapi.py, a key-value web service with FastAPI, kept in memory: a
        module-level app = FastAPI(). PUT /items/KEY with a JSON body {"value": VALUE}
        (VALUE a string) stores it and answers 200 with {"key": KEY, "value": VALUE};
        GET /items/KEY answers 200 with the same, or 404 for an unknown key; DELETE
        /items/KEY removes it and answers 204, or 404 for an unknown key; GET /items
        answers 200 with the sorted list of keys. Test it with FastAPI's TestClient
        (which needs httpx).""",
        ("fastapi", "httpx"),
    ),
    _p(
        "weather_client",
        "function",
        """Write weather.py with fetch_forecast(base_url: str, city: str) -> dict, which
        uses the requests library to GET base_url + "/forecast" with the query parameter
        city (timeout 5 seconds) and returns the decoded JSON object. An answer other than
        200, a body that is not JSON, or a connection error raises WeatherError, an
        exception class defined in weather.py. Also summary(base_url: str, city: str) ->
        str, which formats the forecast's "city", "temp_c" and "sky" fields as
        "Paris: 21.5 C, sunny". Test it against a local server started in the tests.""",
        ("requests",),
    ),
    _p(
        "greet_click",
        "cli",
        """Write greet.py, a command line built with click whose command is the function
        main. `python greet.py NAME` prints `Hello, NAME!`; --shout prints it in upper
        case; --times N prints the line N times (default 1, N at least 1: click refuses
        anything else with exit status 2); --greeting TEXT replaces Hello.""",
        ("click",),
    ),
    # --- the held-out set: written before any prompt was tuned, and never tuned on
    _h(
        "palindrome",
        "function",
        """Write palindrome.py with is_palindrome(text: str) -> bool, which is True when the
        text reads the same backwards once case and every character that is not a letter
        or digit are ignored: is_palindrome("A man, a plan, a canal: Panama") returns True
        and is_palindrome("hello") returns False. Also longest_palindrome(text: str) -> str,
        the longest substring of text that is a palindrome exactly as written (case and
        punctuation count), the first one if several are equally long, and "" for "".""",
    ),
    _h(
        "fizzbuzz",
        "function",
        """Write fizzbuzz.py with fizzbuzz(n: int) -> list[str], the strings for the numbers
        1 to n: "Fizz" for multiples of 3, "Buzz" for multiples of 5, "FizzBuzz" for
        multiples of both and the number itself otherwise, so fizzbuzz(5) gives
        ["1", "2", "Fizz", "4", "Buzz"]. fizzbuzz(0) is [] and a negative n raises
        ValueError.""",
    ),
    _h(
        "wrapper",
        "function",
        """Write wrapper.py with wrap_text(text: str, width: int) -> list[str], a greedy
        word wrap: words (runs of non-whitespace) are put on a line, separated by single
        spaces, as long as the line stays at most width characters; a word longer than
        width gets a line of its own. wrap_text("the quick brown fox", 10) returns
        ["the quick", "brown fox"], and text with no words gives []. A width below 1 raises
        ValueError.""",
    ),
    _h(
        "primes",
        "function",
        """Write primes.py with is_prime(n: int) -> bool, primes_up_to(n: int) -> list[int]
        (every prime <= n, ascending; primes_up_to(10) == [2, 3, 5, 7]) and
        factorize(n: int) -> list[int], the prime factors of n in ascending order, repeated
        as often as they divide n (factorize(12) == [2, 2, 3]). is_prime is False for 0, 1
        and negative numbers; factorize raises ValueError for n < 2.""",
    ),
    _h(
        "minstack",
        "class",
        """Write minstack.py with a class MinStack: push(value) puts a value on top,
        pop() removes and returns the top value, peek() returns it without removing it,
        and min() returns the smallest value in the stack, each in constant time. len(stack)
        is the number of values. pop, peek and min raise IndexError on an empty stack.""",
    ),
    _h(
        "matrix",
        "class",
        """Write matrix.py with a class Matrix(rows) for a matrix of numbers given as a
        list of rows (lists of equal length, at least one row and one column; otherwise
        ValueError). Its attribute shape is the tuple (number of rows, number of columns).
        m + n adds element-wise and m @ n is the matrix product, both raising ValueError
        when the shapes do not fit; transpose() returns a new Matrix; == compares the
        values; m.rows is the list of rows.""",
    ),
    _h(
        "taskqueue",
        "class",
        """Write taskqueue.py with a class TaskQueue, a priority queue of named tasks:
        add(name: str, priority: int) adds a task; pop() removes the task with the highest
        priority and returns its name (of tasks with equal priority, the one added first);
        peek() returns that name without removing the task; both raise IndexError when the
        queue is empty. len(queue) is the number of tasks and `name in queue` tells whether
        a task with that name is waiting.""",
    ),
    _h(
        "grep",
        "cli",
        """Write grep.py: `python grep.py [-i] [-c] PATTERN FILE` prints the lines of FILE
        that contain PATTERN (plain text, not a regular expression), in order, without
        changing them. With -i case is ignored; with -c only the number of matching lines
        is printed. The exit status is 0 when at least one line matched and 1 when none
        did; a FILE that does not exist prints a message to stderr and exits with status
        2.""",
    ),
    _h(
        "rpn",
        "cli",
        """Write rpn.py, a reverse Polish notation calculator: evaluate_rpn(expression: str)
        -> float evaluates tokens separated by spaces, numbers and the operators + - * /;
        `python rpn.py "3 4 + 2 *"` prints 14. A whole result is printed without a decimal
        point, any other as Python prints a float (`python rpn.py "5 2 /"` prints 2.5). An
        unknown token, too few or too many numbers, or a division by zero raise ValueError
        in evaluate_rpn, and the command line then prints a message starting with `error:`
        to stderr and exits with status 1.""",
    ),
    _h(
        "uniq",
        "cli",
        """Write uniq.py: `python uniq.py FILE` prints the lines of FILE, leaving out each
        line that is equal to the line before it. With --all, every line already printed
        anywhere before is left out instead. With --count, each printed line starts with
        the number of times it occurred (in a row, or with --all anywhere in the file) and
        a space, like `3 apple`.""",
    ),
    _h(
        "ledger",
        "store",
        """Write ledger.py with a class Ledger(path) that keeps money entries in a JSON
        file at path. add(date: str, amount: float, category: str) records an entry (date
        as YYYY-MM-DD; amounts may be negative); balance() returns the sum of all amounts
        (0 when empty); by_category() returns a dict of category to the sum of its amounts;
        entries(month=None) returns the entries as dicts with the keys date, amount and
        category, in the order they were added, only those whose date starts with month
        (like "2024-03") when it is given. Every change is saved at once, a new Ledger on
        the same path sees the saved entries, and a missing file is an empty ledger.""",
    ),
    _h(
        "scores",
        "store",
        """Write scores.py, a high-score table kept in a JSON file. `python scores.py --db
        FILE add NAME SCORE` records an integer score for NAME, keeping only the best score
        of each name; `python scores.py --db FILE top N` prints the N best entries, one per
        line as `RANK. NAME SCORE` (like `1. ada 300`), highest score first and names in
        alphabetical order on equal scores; `python scores.py --db FILE reset` removes every
        score. A SCORE that is not an integer prints a message to stderr and exits with
        status 1.""",
    ),
    _h(
        "jobqueue",
        "store",
        """Write jobqueue.py with a class JobQueue(path), a first-in first-out queue of
        JSON-serialisable jobs kept in a JSON file. put(job) -> int stores a job and returns
        its id (1, 2, 3 ..., never reused); take() returns (id, job) for the oldest job not
        taken yet and marks it taken, or None when there is none; done(job_id) removes a
        taken job (KeyError if there is no such taken job); pending() is the number of jobs
        not taken yet. Every change is saved at once. A new JobQueue on the same path sees
        the saved jobs, and jobs that were taken but never done can be taken again from
        it.""",
    ),
    _h(
        "todo_api",
        "web",
        """Write todo_api.py, a todo list web service on http.server, kept in memory.
        make_server(host: str, port: int) returns an http.server.HTTPServer bound to that
        address but not yet serving; each server has its own list. GET /todos answers 200
        with a JSON list of todos, each {"id": ID, "title": TITLE, "done": false or true},
        oldest first. POST /todos with a JSON body {"title": TITLE} answers 201 with the new
        todo (ids 1, 2, 3 ...); a body without a non-empty string title answers 400.
        POST /todos/ID/done marks the todo done and answers 200 with it, or 404 for an
        unknown id. Any other path answers 404 with {"error": "not found"}. Responses are
        JSON with Content-Type application/json.""",
    ),
    _h(
        "kv_server",
        "web",
        """Write kv_server.py, a key-value web service on http.server, kept in memory.
        make_server(host: str, port: int) returns an http.server.HTTPServer bound to that
        address but not yet serving. PUT /keys/NAME stores the request body (text) as the
        value of NAME and answers 204; GET /keys/NAME answers 200 with the value as
        text/plain, or 404 if there is none; DELETE /keys/NAME removes it and answers 204,
        or 404 if there was none; GET /keys answers 200 with a JSON list of the names,
        sorted.""",
    ),
    _h(
        "math_server",
        "web",
        """Write math_server.py, a web service on http.server. make_server(host: str, port:
        int) returns an http.server.HTTPServer bound to that address but not yet serving.
        GET /add?a=X&b=Y answers 200 with {"result": X + Y} and GET /divide?a=X&b=Y with
        {"result": X / Y}, X and Y being numbers (a whole number stays an int in the JSON
        for /add); GET /add?a=2&b=3 answers {"result": 5}. A missing or non-numeric
        parameter answers 400 with a JSON object holding an "error" message, and so does
        /divide with b=0. Any other path answers 404 with {"error": "not found"}. Responses
        are JSON with Content-Type application/json.""",
    ),
)

BY_NAME: dict[str, BenchRequest] = {r.name: r for r in SUITE}


TUNED: tuple[BenchRequest, ...] = tuple(r for r in SUITE if not r.held_out and not r.packages)
HELD_OUT: tuple[BenchRequest, ...] = tuple(r for r in SUITE if r.held_out)
WITH_PACKAGES: tuple[BenchRequest, ...] = tuple(r for r in SUITE if r.packages)


def select(
    requests: int | None = None,
    only: str | None = None,
    *,
    held_out: bool | None = None,
    packages: bool = True,
) -> list[BenchRequest]:
    """The suite, or the named entries (``only``: comma-separated), or the first N;
    ``held_out`` True/False keeps only the held-out or only the tuned requests;
    ``packages=False`` leaves out the requests that need packages (for a harness whose
    venv cannot install them)."""
    chosen = list(SUITE if held_out is None else HELD_OUT if held_out else TUNED)
    if not packages:
        chosen = [r for r in chosen if not r.packages]
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
