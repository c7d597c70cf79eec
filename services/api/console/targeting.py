"""Console pages for targeting rules: an agent's rule set in an environment, edited as a
whole (add, reorder, remove rules and conditions, then save it with one PUT through the
rules service), and the words that say what a rule does ("plan is one of pro, enterprise")
for the editor, the agent page's "who gets what" panel and its preview.

Without JavaScript, every edit of the draft (add, move, remove) is a button of the form
that posts the whole draft back; the page comes back with the edit made, nothing saved
until "Save rules". The API's errors land next to the field their `param` names."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api.console import queries
from services.api.console.sessions import Viewer
from services.api.console.web import db_of, errors_of, place, render, see_other, status_of, url, viewer, write_context
from services.api.console.web import writer as form_writer
from services.api.exceptions import DomainError
from services.api.resolution.plan import Plan
from services.api.rules import service as rules
from services.api.rules.schemas import LIST_OPS, PRESENCE_OPS, TEXT_OPS, RuleSetReplace
from services.shared.agent_config import BASE
from services.shared.rules import OPS, SUBJECT, is_numeric_string

router = APIRouter()
Seen = Annotated[Viewer, Depends(viewer)]
Writes = Annotated[tuple[Viewer, dict[str, str]], Depends(form_writer)]
Place = Annotated[queries.Named, Depends(place)]

# ------------------------------------------------------------------------------ words

OP_WORDS = {
    "eq": "is",
    "neq": "is not",
    "in": "is one of",
    "not_in": "is none of",
    "contains": "contains",
    "starts_with": "starts with",
    "ends_with": "ends with",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "exists": "exists",
    "not_exists": "does not exist",
}
# The op picker: each op with what it means, in the contract's order.
OP_CHOICES = [(op, OP_WORDS[op]) for op in OPS]


def value_text(value: Any) -> str:
    """A condition's value as the editor shows and reads it: numbers and booleans as
    written, a string as is unless it would read as something else (a number, `true`,
    `false`, empty, spaces around it, a leading quote): then in JSON's double quotes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if (
        text == ""
        or text != text.strip()
        or text.startswith('"')
        or text in ("true", "false")
        or is_numeric_string(text)
        or "\n" in text
    ):
        return json.dumps(text, ensure_ascii=False)
    return text


def value_of(text: str, op: str) -> Any:
    """What the editor's text means as a value (`value_text` read back): a quoted string is
    that string; with `contains`, `starts_with`, `ends_with` the text is a string; else a
    numeric string is a number, `true`/`false` a boolean, anything else a string. The API
    then checks the value against the op (a number for `gt`, ...), next to the field."""
    text = text.strip()
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        if isinstance(decoded, str):
            return decoded
    if op in TEXT_OPS:
        return text
    if is_numeric_string(text):
        number = float(text)
        return int(text) if re.fullmatch(r"-?\d+", text) else number
    if text in ("true", "false"):
        return text == "true"
    return text


def _word(value: Any) -> str:
    shown = value_text(value)
    return json.dumps(shown, ensure_ascii=False) if ", " in shown else shown


def condition_words(condition: dict[str, Any]) -> str:
    """ "plan is one of pro, enterprise", "seats ≥ 40", "country does not exist"."""
    name = "the subject" if condition["attribute"] == SUBJECT else condition["attribute"]
    op = condition["op"]
    words = OP_WORDS.get(op, op)
    if op in PRESENCE_OPS:
        return f"{name} {words}"
    if op in LIST_OPS:
        return f"{name} {words} " + ", ".join(_word(value) for value in condition.get("values", []))
    return f"{name} {words} {_word(condition.get('value'))}"


def when_words(rule: dict[str, Any]) -> str:
    return " and ".join(condition_words(condition) for condition in rule["when"])


def serves_words(variant: str, slugs: dict[str, str]) -> str:
    return "the base config" if variant == BASE else f"variant {slugs.get(variant, variant)}"


def plan_words(plan: Plan, slugs: dict[str, str]) -> list[dict[str, Any]]:
    """The plan's rules in order, in words: number, name, when, what it serves."""
    return [
        {
            "number": index + 1,
            "name": rule["name"],
            "when": when_words(dict(rule)),
            "serves": serves_words(rule["serve"]["variant"], slugs),
        }
        for index, rule in enumerate(plan.rules)
    ]


def _context_words(context: queries.Context) -> str:
    parts = [f"subject {context.subject}"] if context.subject is not None else []
    parts += [f"{name} = {value}" for name, value in context.attributes.items()]  # as typed: strings
    return "A request with " + ", ".join(parts) if parts else "A request with no subject and no attributes"


def why(preview: queries.Preview, plan: Plan, split: queries.Split | None) -> dict[str, str]:
    """What the previewed context gets and why, in words: `who` (the context), `gets` (the
    config) and `because` (the step of the resolution order that served it)."""
    config = preview.config
    gets = f"variant {config.variant_slug}" if config.variant_id is not None else "the base config"
    if preview.kind == "rule":
        assert preview.index is not None
        rule = dict(plan.rules[preview.index])
        because = f"rule {preview.index + 1}, “{rule['name']}”, holds: {when_words(rule)}."
        return {"who": _context_words(preview.context), "gets": gets, "because": because, "step": "rule"}
    no_rule = "no rule holds" if plan.rules else "there are no rules"
    if preview.kind == "experiment":
        assert preview.index is not None
        name = split.experiment["name"] if split is not None else "the running experiment"
        arm = "the control" if preview.index == 0 else f"arm {preview.index}"
        share = (
            next((f" ({a.share:g}% of subjects)" for a in split.arms if a.arm == preview.index), "") if split else ""
        )
        because = f"{no_rule}, and experiment {name} puts subject {preview.context.subject} in {arm}{share}."
        return {"who": _context_words(preview.context), "gets": gets, "because": because, "step": "arm"}
    if plan.experiment is None:
        no_split = "no experiment is running"
    elif preview.context.subject is None:
        no_split = "without a subject the running experiment does not split it"
    else:
        no_split = "the experiment does not split it"  # not reached: a subject always gets an arm
    if preview.kind == "variant":
        because = f"{no_rule}, {no_split}, so the active variant serves."
        step = "active"
    else:
        because = f"{no_rule}, {no_split}, and no variant is active: the base config serves."
        step = "base"
    return {"who": _context_words(preview.context), "gets": gets, "because": because, "step": step}


# ------------------------------------------------------------------------------ editor

CONDITION = re.compile(r"^(rules\[\d+\]\.when\[\d+\])\.values?(\[(\d+)\])?$")
SERVE = re.compile(r"^(rules\[\d+\]\.serve)$")


def drafts_of(rule_set: dict[str, Any]) -> list[dict[str, Any]]:
    """The editor's rows for a stored set: texts as the inputs hold them."""
    drafts = []
    for rule in rule_set["rules"]:
        when = []
        for condition in rule["when"]:
            if "values" in condition:
                text = "\n".join(value_text(value) for value in condition["values"])
            elif "value" in condition:
                text = value_text(condition["value"])
            else:
                text = ""
            when.append({"attribute": condition["attribute"], "op": condition["op"], "value": text})
        drafts.append({"id": rule["id"], "name": rule["name"], "serve": rule["serve"]["variant"], "when": when})
    return drafts


def drafts_from(form: dict[str, str]) -> list[dict[str, Any]]:
    """The editor's rows as posted: `rules[i].name`, `rules[i].id`, `rules[i].serve.variant`,
    `rules[i].when[j].attribute`, `.op`, `.value` (in order, up to the first missing one)."""
    drafts = []
    i = 0
    while f"rules[{i}].name" in form:
        rule = f"rules[{i}]"
        when = []
        j = 0
        while f"{rule}.when[{j}].attribute" in form:
            condition = f"{rule}.when[{j}]"
            when.append(
                {
                    "attribute": form[f"{condition}.attribute"],
                    "op": form.get(f"{condition}.op", ""),
                    "value": form.get(f"{condition}.value", "").replace("\r\n", "\n"),
                }
            )
            j += 1
        drafts.append(
            {
                "id": form.get(f"{rule}.id", ""),
                "name": form[f"{rule}.name"],
                "serve": form.get(f"{rule}.serve.variant", BASE),
                "when": when,
            }
        )
        i += 1
    return drafts


def body_of(drafts: list[dict[str, Any]]) -> dict[str, Any]:
    """The PUT body the drafts make. A condition's text is one value, or for `in` and
    `not_in` one value a line; `exists` and `not_exists` take none; an empty text sends
    none (the API says when one is required)."""
    sent = []
    for draft in drafts:
        when = []
        for row in draft["when"]:
            condition: dict[str, Any] = {"attribute": row["attribute"].strip(), "op": row["op"]}
            if row["op"] in LIST_OPS:
                values = [value_of(line, row["op"]) for line in row["value"].split("\n") if line.strip()]
                if values:
                    condition["values"] = values
            elif row["op"] not in PRESENCE_OPS and row["value"].strip():
                condition["value"] = value_of(row["value"], row["op"])
            when.append(condition)
        rule: dict[str, Any] = {"name": draft["name"].strip(), "when": when, "serve": {"variant": draft["serve"]}}
        if draft["id"]:
            rule["id"] = draft["id"]
        sent.append(rule)
    return {"rules": sent}


def blank_condition() -> dict[str, str]:
    return {"attribute": "", "op": "eq", "value": ""}


def edited(drafts: list[dict[str, Any]], do: str) -> list[dict[str, Any]]:
    """The drafts after one of the editor's buttons: `add-rule`, `add-condition:i`, `up:i`,
    `down:i`, `remove-rule:i`, `remove-condition:i:j` (anything else changes nothing)."""
    verb, _, where = do.partition(":")
    numbers = [int(part) for part in where.split(":") if part.isdigit()]
    if verb == "add-rule":
        return [*drafts, {"id": "", "name": "", "serve": BASE, "when": [blank_condition()]}]
    if not numbers or not 0 <= numbers[0] < len(drafts):
        return drafts
    i = numbers[0]
    if verb == "add-condition":
        drafts[i]["when"].append(blank_condition())
    elif verb == "remove-rule":
        del drafts[i]
    elif verb == "remove-condition" and len(numbers) == 2 and 0 <= numbers[1] < len(drafts[i]["when"]):
        del drafts[i]["when"][numbers[1]]
    elif verb == "up" and i > 0:
        drafts[i - 1], drafts[i] = drafts[i], drafts[i - 1]
    elif verb == "down" and i < len(drafts) - 1:
        drafts[i + 1], drafts[i] = drafts[i], drafts[i + 1]
    return drafts


def field_of(param: str) -> str:
    """The editor's field for an API error's `param`: `rules[1].when[0].values[2]` and
    `.values` are the condition's value box, `rules[1].serve` its variant picker."""
    found = CONDITION.match(param)
    if found:
        return f"{found.group(1)}.value"
    if SERVE.match(param):
        return f"{param}.variant"
    return param


def placed(errors: dict[str, str], drafts: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """The API's errors by the editor's field, and those no field shows (said at the top)."""
    shown = {"rules"}
    for i, draft in enumerate(drafts):
        rule = f"rules[{i}]"
        shown |= {rule, f"{rule}.name", f"{rule}.id", f"{rule}.when", f"{rule}.serve.variant"}
        for j in range(len(draft["when"])):
            shown |= {f"{rule}.when[{j}]", f"{rule}.when[{j}].attribute", f"{rule}.when[{j}].op"}
            shown.add(f"{rule}.when[{j}].value")
    by_field: dict[str, str] = {}
    elsewhere: list[str] = []
    for param, message in errors.items():
        found = CONDITION.match(param)
        if found and found.group(3) is not None:  # one value of a list: its line
            message = f"line {int(found.group(3)) + 1}: {message}"
        field = field_of(param)
        if field in shown:
            by_field[field] = f"{by_field[field]}; {message}" if field in by_field else message
        else:
            elsewhere.append(f"{param}: {message}")
    return by_field, elsewhere


@router.get("/agents/{agent}/rules")
async def rules_page(request: Request, agent: str, who: Seen, named: Place) -> Response:
    shown = await queries.rules_page(db_of(request), agent, named=named)
    return _editor(request, shown, who, drafts=drafts_of(shown.rule_set), version=shown.rule_set["version"], errors={})


def _editor(
    request: Request,
    shown: queries.RulesPage,
    who: Viewer,
    *,
    drafts: list[dict[str, Any]],
    version: Any,
    errors: dict[str, str],
    problem: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    slugs = dict(shown.slugs)
    return render(
        request,
        "rules.html",
        status_code=status_code,
        who=who,
        where=shown.where,
        agent=shown.agent,
        rule_set=shown.rule_set,
        read=[
            {
                "number": n + 1,
                "name": r["name"],
                "when": when_words(r),
                "serves": serves_words(r["serve"]["variant"], slugs),
            }
            for n, r in enumerate(shown.rule_set["rules"])
        ],
        drafts=drafts,
        form={f"rules[{i}].name": draft["name"] for i, draft in enumerate(drafts)},
        version=version,
        choices=[(BASE, "the base config"), *[(variant_id, f"variant {slug}") for variant_id, slug in shown.slugs]],
        ops=OP_CHOICES,
        errors=errors,
        problem=problem,
        notice=notice,
    )


@router.post("/agents/{agent}/rules")
async def save(request: Request, agent: str, writes: Writes, named: Place) -> Response:
    """One of the editor's buttons: an edit of the draft (shown again, nothing saved), or
    "Save rules" (`do=save`): the whole set in one PUT, at the version the page was opened at."""
    who, form = writes
    db = db_of(request)
    shown = await queries.rules_page(db, agent, named=named)
    where = shown.where
    drafts = drafts_from(form)
    version = form.get("version", "")
    do = form.get("do", "save")
    if do != "save":
        return _editor(
            request,
            shown,
            who,
            drafts=edited(drafts, do),
            version=version,
            errors={},
            notice="Not saved yet: the rules below are a draft until you press Save rules.",
        )
    try:
        await rules.replace_rule_set(
            db,
            shown.agent["id"],
            where.id,
            RuleSetReplace.model_validate(body_of(drafts)),
            context=write_context(who, form),
        )
    except (ValidationError, DomainError) as error:
        if isinstance(error, DomainError) and error.code == "resource_missing" and not error.errors:
            raise  # the agent or the environment is gone: the 404 page
        problem, errors = errors_of(error)
        by_field, elsewhere = placed(errors, drafts)
        if elsewhere:
            problem = f"{problem} " + "; ".join(elsewhere)
        return _editor(
            request,
            shown,
            who,
            drafts=drafts,
            version=version,
            errors=by_field,
            problem=problem,
            status_code=status_of(error),
        )
    return see_other(where.link(url("agents", shown.agent["slug"])) + "#who-h")
