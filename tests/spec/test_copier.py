"""The example copier: a scripted model's asserts are kept only when the request's own
text backs them."""

from __future__ import annotations

from forgeline.llm.scripted import prompt_text, scripted_model
from forgeline.spec import derive_spec
from forgeline.spec.copier import COPIER_INSTRUCTIONS, copier_prompt, copy_examples, with_copies

ROMAN = (
    "Write roman.py (the year MMXX is one such number) with to_roman(number: int) -> str "
    "and from_roman(text: str) -> int "
    "for the numbers 1 to 3999 in the usual subtractive notation (4 is IV, 9 is IX, 40 is "
    "XL, 1994 is MCMXCIV). to_roman raises ValueError for numbers outside 1..3999. "
    "Any answer must fit in a tweet of 280 characters."
)

ANSWER = """Here are the examples:

```python
assert to_roman(4) == "IV"
assert to_roman(1994) == "MCMXCIV"
assert from_roman("XL") == 40
assert to_roman(5) == "V"
assert to_roman(280) == "MMXX"
assert parse_roman("IX") == 9
with pytest.raises(ValueError):
    to_roman(4000)
with pytest.raises(TypeError):
    to_roman("x")

import os
```
"""


async def test_only_asserts_the_text_backs_are_kept() -> None:
    spec = derive_spec(ROMAN)
    assert spec.trials == ()  # the patterns read none of these
    seen: list[str] = []

    def answer(messages: list) -> str:
        seen.append(prompt_text(messages) + (messages[-1].instructions or ""))
        return ANSWER

    result = await copy_examples(scripted_model([answer]), spec)
    assert [t.code for t in result.trials] == [
        'assert to_roman(4) == "IV"',
        'assert to_roman(1994) == "MCMXCIV"',
        'assert from_roman("XL") == 40',
    ]
    assert all(t.source == "model" for t in result.trials)
    reasons = dict(result.refused)
    assert reasons['assert to_roman(5) == "V"'] == "5 is not in the request"
    assert reasons['assert to_roman(280) == "MMXX"'] == (
        "its values are not from one place in the request"
    )
    assert reasons['assert parse_roman("IX") == 9'] == (
        "it uses parse_roman, which the request does not name"
    )
    assert reasons["import os"] == "a Import statement is not an example"
    raises = [code for code in reasons if "raises" in code]
    assert reasons[raises[0]] == "4000 is not in the request"
    assert reasons[raises[1]] == "the request never names TypeError"
    assert result.answer is not None and result.answer.temperature == 0.0
    # the model saw the request and the interface, and the copier's instructions
    assert ROMAN in seen[0] and "to_roman(number: int) -> str" in seen[0]
    assert COPIER_INSTRUCTIONS.split(".")[0] in seen[0]
    assert with_copies(spec, [result]).trials == result.trials


async def test_nothing_to_copy() -> None:
    spec = derive_spec('Write s.py with slugify(text: str). slugify("A B") == "a-b".')
    result = await copy_examples(scripted_model(["NONE"]), spec)
    assert result.trials == () and result.refused == ()
    assert 'assert slugify("A B") == "a-b"' in copier_prompt(spec)  # not asked again
