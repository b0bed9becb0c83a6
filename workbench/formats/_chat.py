"""Chat messages: checked, and rendered as the model reads them.

A conversation is a list of ``{"role", "content"}`` messages, roles ``system``, ``user`` and
``assistant`` (the chat JSONL that the emergent-misalignment papers publish). Rendering:

* **With a chat template** (a Hugging Face tokenizer whose ``chat_template`` is set):
  ``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)``.
  Only ``role`` and ``content`` reach the template (other keys of a message are dropped).
* **Plain** (no tokenizer, no template, or ``chat=False``): the messages' contents joined by
  ``"\\n"``, roles left out. A single user turn renders as its text, exactly as
  :func:`workbench.execution.render_prompts` gives a prompt with ``chat=False``, and the
  answer follows after the ``" "`` that :func:`workbench.data.encode_pairs` puts between a
  prompt and its completion. ``add_generation_prompt`` has no plain form and is ignored.

``chat`` follows :func:`workbench.execution.render_prompts`: ``None`` uses the tokenizer's
template where it has one, ``False`` never does, ``True`` requires one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from workbench.formats._rows import bad

ROLES = ("system", "user", "assistant")
Message = dict[str, str]
_SHAPE = '{"role": "system"|"user"|"assistant", "content": "..."}'


def check_messages(messages: Any, place: str, name: str = "messages") -> list[Message]:
    """The conversation as ``[{"role", "content"}, ...]``; a ``ValueError`` names a bad message.

    A column-wise ``{"role": [...], "content": [...]}`` (how ``datasets`` may hand back a list of
    structs) is read as the list it stands for.
    """
    if isinstance(messages, Mapping) and isinstance(messages.get("role"), list):
        roles, contents = messages["role"], messages.get("content")
        if isinstance(contents, list) and len(contents) == len(roles):
            messages = [{"role": r, "content": c} for r, c in zip(roles, contents, strict=True)]
    if not isinstance(messages, list | tuple) or not messages:
        problem = (
            "an empty list" if isinstance(messages, list | tuple)
            else f"a {type(messages).__name__}, not a list of messages"
        )
        raise bad(place, name, problem, f"give a list of {_SHAPE} objects")
    out: list[Message] = []
    for i, m in enumerate(messages):
        at = f"{name}[{i}]"
        if not isinstance(m, Mapping):
            raise bad(place, at, f"a {type(m).__name__}, not a message object",
                      f"write each message as {_SHAPE}")
        role, content = m.get("role"), m.get("content")
        if role is None:
            raise bad(place, f"{at}.role", "missing", f"write each message as {_SHAPE}")
        if role not in ROLES:
            raise bad(place, f"{at}.role", f"{role!r} is not a role read here",
                      "use 'system', 'user' or 'assistant' (tool and function turns are not "
                      "read; drop them)")
        if content is None:
            raise bad(place, f"{at}.content", "missing", f"write each message as {_SHAPE}")
        if not isinstance(content, str):
            raise bad(place, f"{at}.content", f"a {type(content).__name__}, not a string",
                      "give the content as one string (join the text parts of a multi-part "
                      "content list)")
        out.append({"role": role, "content": content})
    return out


def uses_template(tokenizer: Any, chat: bool | None) -> bool:
    """Whether to render with ``tokenizer``'s chat template (``chat`` as in the module doc)."""
    has = bool(getattr(tokenizer, "chat_template", None)) if tokenizer is not None else False
    if chat is None:
        return has
    if chat and not has:
        raise ValueError(
            "chat=True but "
            + ("no tokenizer was given" if tokenizer is None else "this tokenizer has no chat "
               "template")
            + "; pass a tokenizer with a chat_template, or chat=None/False for plain rendering"
        )
    return bool(chat)


def plain(messages: Sequence[Message]) -> str:
    """The plain rendering: the contents joined by ``"\\n"``."""
    return "\n".join(m["content"] for m in messages)


def apply_template(
    tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool, place: str
) -> str:
    """``apply_chat_template`` as text; a template that raises becomes a ``ValueError``."""
    try:
        out = tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
    except Exception as err:  # jinja's TemplateError, or the template's own raise_exception
        raise ValueError(
            f"{place}: the tokenizer's chat template rejected the conversation ({err}); "
            "reshape it as the template requires (e.g. some templates allow no system turn, "
            "or need user and assistant turns to alternate), or pass chat=False"
        ) from err
    if not isinstance(out, str):
        raise TypeError(
            f"apply_chat_template(tokenize=False) returned a {type(out).__name__}, not text; "
            "pass a Hugging Face tokenizer"
        )
    return out


def render_chat(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    add_generation_prompt: bool = True,
    *,
    chat: bool | None = None,
) -> str:
    """A conversation as the model reads it: in the tokenizer's chat template, or plain.

    Args:
        tokenizer: a Hugging Face tokenizer (e.g. ``subject.tokenizer``), or ``None``.
        messages: ``{"role", "content"}`` dicts, roles ``system``, ``user``, ``assistant``.
        add_generation_prompt: end with the template's opening of an assistant turn (ignored
            by the plain rendering).
        chat: ``None`` uses the template where there is one, ``False`` never, ``True`` requires one.

    Raises:
        ValueError: a malformed message, or a template that rejects the conversation.
    """
    checked = check_messages(list(messages), "render_chat")
    if uses_template(tokenizer, chat):
        return apply_template(tokenizer, checked, add_generation_prompt, "render_chat")
    return plain(checked)


def render_pair(
    messages: Sequence[Message], tokenizer: Any, template: bool, place: str
) -> tuple[str, str, bool]:
    """``(prompt, completion, fell_back)`` of a conversation with at least one assistant turn.

    The completion is the *last* assistant turn; everything before it (earlier assistant turns
    included) is the prompt, and messages after it are dropped. With a template the prompt is
    the context rendered with the generation prompt, and the completion is what the full
    rendering adds to it (the answer and the template's end-of-turn text). When the full
    rendering does not start with the prompt's (some templates render past turns differently),
    the completion falls back to the answer followed by ``tokenizer.eos_token`` and
    ``fell_back`` is true.
    """
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    context, answer = list(messages[:last]), messages[last]["content"]
    if not template:
        return plain(context), answer, False
    prompt = apply_template(tokenizer, context, True, place)
    full = apply_template(tokenizer, list(messages[: last + 1]), False, place)
    if full.startswith(prompt):
        return prompt, full[len(prompt) :], False
    return prompt, answer + str(getattr(tokenizer, "eos_token", None) or ""), True
