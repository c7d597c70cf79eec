"""The admin calls, mirroring the HTTP API: `agents`, `variants`, `experiments`, `keys`,
`environments` and `rules`.

Each namespace is written once and used by both clients: a method builds its request
(`Call`) and hands it to the client's transport, which sends it (the sync client
returns the JSON object, the async one an awaitable of it). Every `POST` carries an
`Idempotency-Key` (pass your own to make a retry across processes safe as well), and
`if_match` takes the object's `version` (or an ETag, or `"*"`). Objects come back as the
API's JSON objects (`dict`); a list call returns one page
(`{"object": "list", "data", "first_id", "last_id", "has_more"}`), continued with
`after=page["last_id"]`. Every call on an agent takes `environment=` (a slug or id; None
leaves it out: the environment the API key is bound to, else `production`).

    variant = client.variants.create("support-bot", "concise", overrides={"temperature": 0.2})
    client.variants.activate("support-bot", variant["slug"], if_match=variant["version"])
    client.variants.activate("support-bot", variant["slug"], environment="staging")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from agent_variants._http import Call, segment
from agent_variants.rules import Scalar

JSON = dict[str, Any]
Obj = TypeVar("Obj", covariant=True)  # JSON, or Awaitable[JSON]
Nil = TypeVar("Nil", covariant=True)  # None, or Awaitable[None]
ETag = int | str


class Transport(Protocol[Obj, Nil]):
    def obj(self, call: Call) -> Obj: ...

    def nil(self, call: Call) -> Nil: ...


def _fields(**fields: Any) -> JSON:
    """A create body: the fields given (None stands for "leave it to the default")."""
    return {name: value for name, value in fields.items() if value is not None}


def _page(limit: int | None, after: str | None, **filters: Any) -> dict[str, Any]:
    return {"limit": limit, "after": after, **filters}


def _in(environment: str | None, **params: Any) -> dict[str, Any]:
    """A request's query: `params` and `?environment=` (left out when None, as every None is)."""
    return {**params, "environment": environment}


class _Namespace(Generic[Obj, Nil]):
    def __init__(self, transport: Transport[Obj, Nil]) -> None:
        self._send = transport


def _agent(agent: str) -> str:
    return f"/v1/agents/{segment(agent)}"


class Agents(_Namespace[Obj, Nil]):
    """`client.agents`: agents, their resolution, usage, history and undo.

    agent = client.agents.create("Support bot", {"model_provider": "openai", "model_name": "gpt-4o"})
    client.agents.update(agent["slug"], {"config": {"temperature": 0.3}}, if_match=agent["version"])
    """

    def create(
        self,
        name: str,
        config: Mapping[str, Any],
        *,
        slug: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        environment: str | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """An agent: `client.agents.create("Support bot", {"model_provider": "openai", "model_name": "gpt-4o"})`."""
        body = _fields(name=name, slug=slug, description=description, metadata=metadata, config=dict(config))
        call = Call.of("POST", "/v1/agents", json=body, params=_in(environment), idempotency_key=idempotency_key)
        return self._send.obj(call)

    def list(
        self,
        *,
        limit: int | None = None,
        after: str | None = None,
        archived: bool | None = None,
        environment: str | None = None,
    ) -> Obj:
        """One page of agents, newest first: `client.agents.list(limit=50, after=page["last_id"])`;
        `archived=True` lists the archived ones."""
        params = _in(environment, **_page(limit, after, archived=archived))
        return self._send.obj(Call.of("GET", "/v1/agents", params=params))

    def get(self, agent: str, *, environment: str | None = None) -> Obj:
        """An agent by id or slug (`active_variant_id`: the environment's):
        `client.agents.get("support-bot", environment="staging")`."""
        return self._send.obj(Call.of("GET", _agent(agent), params=_in(environment)))

    def update(
        self,
        agent: str,
        patch: Mapping[str, Any],
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
    ) -> Obj:
        """A JSON merge patch over `name`, `slug`, `description`, `metadata`, `config`."""
        call = Call.of("PATCH", _agent(agent), json=dict(patch), params=_in(environment), if_match=if_match)
        return self._send.obj(call)

    def delete(
        self,
        agent: str,
        *,
        purge: bool | None = None,
        environment: str | None = None,
        if_match: ETag | None = None,
    ) -> Nil:
        """Archive an agent (contract 1.1: its history stays, `unarchive` brings it back):
        `client.agents.delete("support-bot", if_match=agent["version"])`. `purge=True` (an
        `admin` key) erases an archived agent with everything it had."""
        params = _in(environment, purge=purge)
        return self._send.nil(Call.of("DELETE", _agent(agent), params=params, if_match=if_match))

    def unarchive(
        self,
        agent: str,
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """Bring an archived agent back as it was: `client.agents.unarchive("support-bot")`."""
        call = Call.of(
            "POST",
            f"{_agent(agent)}/unarchive",
            params=_in(environment),
            if_match=if_match,
            idempotency_key=idempotency_key,
        )
        return self._send.obj(call)

    def resolved(
        self,
        agent: str,
        *,
        subject: str | None = None,
        attributes: Mapping[str, Scalar] | None = None,
        variant: str | None = None,
        at: str | None = None,
        explain: bool | None = None,
        environment: str | None = None,
    ) -> Obj:
        """The service's own resolution (`GET .../resolved`); `resolve()` answers from memory instead.
        `attributes` go as `attr.<name>`: `client.agents.resolved("support-bot", attributes={"plan": "pro"})`."""
        params: dict[str, Any] = {"subject": subject, "variant": variant, "at": at, "explain": explain}
        params.update({f"attr.{name}": value for name, value in (attributes or {}).items()})
        return self._send.obj(Call.of("GET", f"{_agent(agent)}/resolved", params=_in(environment, **params)))

    def bundle(self, agent: str, *, environment: str | None = None) -> Obj:
        """What the SDK resolves from: `client.agents.bundle("support-bot", environment="staging")["etag"]`."""
        return self._send.obj(Call.of("GET", f"{_agent(agent)}/bundle", params=_in(environment)))

    def usage(self, agent: str, *, environment: str | None = None) -> Obj:
        """Tokens and runs, by variant (None: every environment's):
        `client.agents.usage("support-bot")["total_tokens"]`."""
        return self._send.obj(Call.of("GET", f"{_agent(agent)}/usage", params=_in(environment)))

    def revisions(
        self,
        agent: str,
        *,
        target_id: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        environment: str | None = None,
    ) -> Obj:
        """One page of the agent's history, newest first: `client.agents.revisions("support-bot", limit=10)`."""
        params = _in(environment, **_page(limit, after, target_id=target_id))
        return self._send.obj(Call.of("GET", f"{_agent(agent)}/revisions", params=params))

    def revision(self, agent: str, revision: str, *, environment: str | None = None) -> Obj:
        """One revision: `client.agents.revision("support-bot", "rev_...")["before"]`."""
        path = f"{_agent(agent)}/revisions/{segment(revision)}"
        return self._send.obj(Call.of("GET", path, params=_in(environment)))

    def undo(
        self,
        agent: str,
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """Revert the agent's newest change not undone yet (with `environment`: made there or to
        shared definitions): `{"object": "undo", "reverted_revision_id", "revision"}`."""
        call = Call.of(
            "POST",
            f"{_agent(agent)}/undo",
            params=_in(environment),
            if_match=if_match,
            idempotency_key=idempotency_key,
        )
        return self._send.obj(call)


class Variants(_Namespace[Obj, Nil]):
    """`client.variants`: an agent's variants, activation, restore and diff. Definitions are
    shared by every environment; which one is active is per environment (`environment=`).

    draft = client.variants.create("support-bot", "terse", clone_from="base", overrides={"max_tokens": 256})
    client.variants.activate("support-bot", draft["slug"], if_match=draft["version"])
    """

    def _path(self, agent: str, variant: str | None = None, action: str | None = None) -> str:
        path = f"{_agent(agent)}/variants"
        if variant is not None:
            path += f"/{segment(variant)}"
        return f"{path}/{action}" if action else path

    def create(
        self,
        agent: str,
        variant_name: str,
        *,
        slug: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        clone_from: str | None = None,
        environment: str | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """A variant: `client.variants.create("support-bot", "Concise", overrides={"temperature": 0.2})`."""
        body = _fields(
            variant_name=variant_name,
            slug=slug,
            description=description,
            metadata=metadata,
            overrides=None if overrides is None else dict(overrides),
            clone_from=clone_from,
        )
        call = Call.of("POST", self._path(agent), json=body, params=_in(environment), idempotency_key=idempotency_key)
        return self._send.obj(call)

    def list(
        self,
        agent: str,
        *,
        is_active: bool | None = None,
        limit: int | None = None,
        after: str | None = None,
        environment: str | None = None,
    ) -> Obj:
        """One page of the agent's variants (`is_active`: in the environment):
        `client.variants.list("support-bot", is_active=True, environment="staging")`."""
        params = _in(environment, **_page(limit, after, is_active=is_active))
        return self._send.obj(Call.of("GET", self._path(agent), params=params))

    def get(self, agent: str, variant: str, *, environment: str | None = None) -> Obj:
        """A variant by id or slug: `client.variants.get("support-bot", "concise")`."""
        return self._send.obj(Call.of("GET", self._path(agent, variant), params=_in(environment)))

    def update(
        self,
        agent: str,
        variant: str,
        patch: Mapping[str, Any],
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
    ) -> Obj:
        """A JSON merge patch; an override set to None is removed (inherited again)."""
        call = Call.of(
            "PATCH", self._path(agent, variant), json=dict(patch), params=_in(environment), if_match=if_match
        )
        return self._send.obj(call)

    def delete(self, agent: str, variant: str, *, environment: str | None = None, if_match: ETag | None = None) -> Nil:
        """Delete a variant (not an active one, nor one an experiment or a rule names):
        `client.variants.delete("support-bot", "concise")`."""
        return self._send.nil(Call.of("DELETE", self._path(agent, variant), params=_in(environment), if_match=if_match))

    def activate(
        self,
        agent: str,
        variant: str,
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """Make it the active variant (of the environment): `client.variants.activate("support-bot", "concise")`."""
        return self._action(agent, variant, "activate", environment, if_match, idempotency_key)

    def deactivate(
        self,
        agent: str,
        variant: str,
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """Leave the environment on the base config: `client.variants.deactivate("support-bot", "concise")`."""
        return self._action(agent, variant, "deactivate", environment, if_match, idempotency_key)

    def restore(
        self,
        agent: str,
        variant: str,
        revision_id: str,
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """Put it back as it was after a revision: `client.variants.restore("support-bot", "concise", "rev_...")`."""
        body = {"revision_id": revision_id}
        return self._action(agent, variant, "restore", environment, if_match, idempotency_key, body)

    def diff(self, agent: str, variant: str, *, against: str = "base", environment: str | None = None) -> Obj:
        """Resolved differences: `client.variants.diff("support-bot", "concise", against="base")["changes"]`."""
        params = _in(environment, against=against)
        return self._send.obj(Call.of("GET", self._path(agent, variant, "diff"), params=params))

    def _action(
        self,
        agent: str,
        variant: str,
        action: str,
        environment: str | None,
        if_match: ETag | None,
        idempotency_key: str | None,
        body: JSON | None = None,
    ) -> Obj:
        path = self._path(agent, variant, action)
        call = Call.of(
            "POST", path, json=body, params=_in(environment), if_match=if_match, idempotency_key=idempotency_key
        )
        return self._send.obj(call)


class Experiments(_Namespace[Obj, Nil]):
    """`client.experiments`: A/B tests between variants, and their results; each runs in one
    environment (`environment=`).

    test = client.experiments.create("support-bot", "terse vs base",
                                     [{"variant": "base", "weight": 1}, {"variant": "terse", "weight": 1}])
    client.experiments.start("support-bot", test["id"])
    client.experiments.results("support-bot", test["id"])["arms"][1]["vs_control"]
    """

    def _path(self, agent: str, experiment: str | None = None, action: str | None = None) -> str:
        path = f"{_agent(agent)}/experiments"
        if experiment is not None:
            path += f"/{segment(experiment)}"
        return f"{path}/{action}" if action else path

    def create(
        self,
        agent: str,
        name: str,
        arms: Sequence[Mapping[str, Any]] | None = None,
        *,
        kind: str | None = None,
        variant: str | None = None,
        steps: Sequence[Mapping[str, Any]] | None = None,
        guardrails: Sequence[Mapping[str, Any]] | None = None,
        min_outcomes: int | None = None,
        description: str | None = None,
        salt: str | None = None,
        environment: str | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """A draft: `client.experiments.create("support-bot", "test", [{"variant": "base", "weight": 1}, ...])`;
        `environment="staging"` (the body's field) runs it there. A rollout (contract 1.1)
        takes `kind="rollout"`, a `variant` and its `steps` instead of arms:
        `create("support-bot", "ship terse", kind="rollout", variant="terse",
        steps=[{"percent": 10, "hold_seconds": 3600}, {"percent": 100, "hold_seconds": 0}],
        guardrails=[{"metric": "success_rate", "max_degradation": 0.02}])`."""
        body = _fields(
            kind=kind,
            name=name,
            description=description,
            arms=None if arms is None else [dict(arm) for arm in arms],
            variant=variant,
            steps=None if steps is None else [dict(step) for step in steps],
            guardrails=None if guardrails is None else [dict(guardrail) for guardrail in guardrails],
            min_outcomes=min_outcomes,
            salt=salt,
            environment=environment,
        )
        return self._send.obj(Call.of("POST", self._path(agent), json=body, idempotency_key=idempotency_key))

    def list(
        self,
        agent: str,
        *,
        status: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        environment: str | None = None,
    ) -> Obj:
        """One page of the environment's experiments: `client.experiments.list("support-bot", status="running")`."""
        params = _in(environment, **_page(limit, after, status=status))
        return self._send.obj(Call.of("GET", self._path(agent), params=params))

    def get(self, agent: str, experiment: str, *, environment: str | None = None) -> Obj:
        """An experiment: `client.experiments.get("support-bot", "exp_...")["status"]`."""
        return self._send.obj(Call.of("GET", self._path(agent, experiment), params=_in(environment)))

    def update(
        self,
        agent: str,
        experiment: str,
        patch: Mapping[str, Any],
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
    ) -> Obj:
        """A merge patch (arms and salt only while a draft):
        `client.experiments.update("support-bot", "exp_...", {"name": "v2"})`."""
        path = self._path(agent, experiment)
        call = Call.of("PATCH", path, json=dict(patch), params=_in(environment), if_match=if_match)
        return self._send.obj(call)

    def delete(
        self, agent: str, experiment: str, *, environment: str | None = None, if_match: ETag | None = None
    ) -> Nil:
        """Delete a draft: `client.experiments.delete("support-bot", "exp_...")`."""
        call = Call.of("DELETE", self._path(agent, experiment), params=_in(environment), if_match=if_match)
        return self._send.nil(call)

    def start(
        self,
        agent: str,
        experiment: str,
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """Start splitting traffic: `client.experiments.start("support-bot", "exp_...")`."""
        return self._action(agent, experiment, "start", environment, if_match, idempotency_key)

    def stop(
        self,
        agent: str,
        experiment: str,
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """Stop it (final): `client.experiments.stop("support-bot", "exp_...")`."""
        return self._action(agent, experiment, "stop", environment, if_match, idempotency_key)

    def pause(
        self,
        agent: str,
        experiment: str,
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """Hold a running rollout at its step (it keeps serving it):
        `client.experiments.pause("support-bot", "exp_...")`."""
        return self._action(agent, experiment, "pause", environment, if_match, idempotency_key)

    def resume(
        self,
        agent: str,
        experiment: str,
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """Let a paused rollout go on: `client.experiments.resume("support-bot", "exp_...")`."""
        return self._action(agent, experiment, "resume", environment, if_match, idempotency_key)

    def guardrail_history(
        self,
        agent: str,
        experiment: str,
        *,
        limit: int | None = None,
        after: str | None = None,
        environment: str | None = None,
    ) -> Obj:
        """A rollout's guardrail figures over time, one page:
        `client.experiments.guardrail_history("support-bot", "exp_...")["data"]`."""
        params = _in(environment, **_page(limit, after))
        return self._send.obj(Call.of("GET", self._path(agent, experiment, "guardrail_history"), params=params))

    def results(self, agent: str, experiment: str, *, environment: str | None = None) -> Obj:
        """Per-arm figures and tests against the control: `client.experiments.results("support-bot", "exp_...")`."""
        return self._send.obj(Call.of("GET", self._path(agent, experiment, "results"), params=_in(environment)))

    def _action(
        self,
        agent: str,
        experiment: str,
        action: str,
        environment: str | None,
        if_match: ETag | None,
        idempotency_key: str | None,
    ) -> Obj:
        path = self._path(agent, experiment, action)
        call = Call.of("POST", path, params=_in(environment), if_match=if_match, idempotency_key=idempotency_key)
        return self._send.obj(call)


class Keys(_Namespace[Obj, Nil]):
    """`client.keys` (an `admin` key): API keys. The secret is in `create`'s answer only.

    key = client.keys.create("billing-agent", "resolve")
    key["secret"]   # keep it: it is never shown again
    client.keys.revoke("billing-agent")
    """

    def create(
        self,
        name: str,
        scope: str,
        *,
        expires_at: str | None = None,
        environment: str | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """A key (its secret is in this answer only): `client.keys.create("billing-agent", "resolve")["secret"]`;
        `environment="staging"` binds it to that environment (it works there only)."""
        body = _fields(name=name, scope=scope, expires_at=expires_at, environment=environment)
        return self._send.obj(Call.of("POST", "/v1/keys", json=body, idempotency_key=idempotency_key))

    def list(self, *, limit: int | None = None, after: str | None = None) -> Obj:
        """One page of keys, never their secrets: `client.keys.list()`."""
        return self._send.obj(Call.of("GET", "/v1/keys", params=_page(limit, after)))

    def get(self, key: str) -> Obj:
        """A key by id or name: `client.keys.get("billing-agent")["last_used_at"]`."""
        return self._send.obj(Call.of("GET", f"/v1/keys/{segment(key)}"))

    def revoke(self, key: str) -> Nil:
        """Revoke a key, everywhere within a second: `client.keys.revoke("billing-agent")`."""
        return self._send.nil(Call.of("DELETE", f"/v1/keys/{segment(key)}"))


class Environments(_Namespace[Obj, Nil]):
    """`client.environments` (writes need an `admin` key bound to no environment): where
    variants are active, rules apply and experiments run. Every installation has `production`.

    staging = client.environments.create("Staging")
    client.variants.activate("support-bot", "terse", environment=staging["slug"])
    """

    def create(
        self,
        name: str,
        *,
        slug: str | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> Obj:
        """An environment (without `slug`, derived from `name`): `client.environments.create("Staging")["slug"]`."""
        body = _fields(name=name, slug=slug, description=description)
        return self._send.obj(Call.of("POST", "/v1/environments", json=body, idempotency_key=idempotency_key))

    def list(self, *, limit: int | None = None, after: str | None = None) -> Obj:
        """One page of environments, newest first: `client.environments.list(limit=100)["data"]`."""
        return self._send.obj(Call.of("GET", "/v1/environments", params=_page(limit, after)))

    def get(self, environment: str) -> Obj:
        """An environment by id or slug: `client.environments.get("production")["id"]`."""
        return self._send.obj(Call.of("GET", f"/v1/environments/{segment(environment)}"))

    def update(self, environment: str, patch: Mapping[str, Any], *, if_match: ETag | None = None) -> Obj:
        """A merge patch over `name` and `description` (the slug never changes):
        `client.environments.update("staging", {"name": "Staging (EU)"}, if_match=env["version"])`."""
        path = f"/v1/environments/{segment(environment)}"
        return self._send.obj(Call.of("PATCH", path, json=dict(patch), if_match=if_match))

    def delete(self, environment: str, *, if_match: ETag | None = None) -> Nil:
        """Delete an environment nothing is active, ruled or running in, and no live key is bound to
        (never `production`: `Conflict`, `.code` `environment_protected`): `client.environments.delete("staging")`."""
        return self._send.nil(Call.of("DELETE", f"/v1/environments/{segment(environment)}", if_match=if_match))


class Rules(_Namespace[Obj, Nil]):
    """`client.rules`: an agent's ordered targeting rules in one environment, read and replaced whole.

    rule_set = client.rules.get("support-bot", environment="staging")
    client.rules.replace("support-bot",
                         [{"name": "pro", "when": [{"attribute": "plan", "op": "eq", "value": "pro"}],
                           "serve": {"variant": "terse"}}],
                         environment="staging", if_match=rule_set["version"])
    """

    def get(self, agent: str, *, environment: str | None = None) -> Obj:
        """The rule set (`{"object": "rule_set", "rules", "version", ...}`; version 0 and no rules
        when never written): `client.rules.get("support-bot", environment="staging")["rules"]`."""
        return self._send.obj(Call.of("GET", f"{_agent(agent)}/rules", params=_in(environment)))

    def replace(
        self,
        agent: str,
        rules: Sequence[Mapping[str, Any]],
        *,
        environment: str | None = None,
        if_match: ETag | None = None,
    ) -> Obj:
        """Replace the whole set (`PUT`; an identical set is a no-op, `[]` clears it); a rule sent
        without `id` keeps the id of the current rule with its name:
        `client.rules.replace("support-bot", [], environment="staging", if_match=rule_set["version"])`."""
        body = {"rules": [dict(rule) for rule in rules]}
        call = Call.of("PUT", f"{_agent(agent)}/rules", json=body, params=_in(environment), if_match=if_match)
        return self._send.obj(call)
