"""Chat chunks in, OpenAI Responses API stream events out: numbered typed events (response.created,
response.output_text.delta, response.function_call_arguments.delta, ..., response.completed), for a /v1/responses
stream translated to chat completions. Pure rules: no Flask, no database, no network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webapp.api.schemas import responses as rs
from webapp.services.responses_translate import call_item, finish_status, message_item, new_id, skeleton


@dataclass
class _Call:
    output_index: int
    item_id: str
    call_id: str
    name: str
    arguments: str = ""


class StreamTranslator:
    """Chat chunks in, Responses' typed events out (each a dict with `type` and `sequence_number`)."""

    def __init__(self, req: rs.ResponsesRequest, response_id: str, created_at: int, model: str) -> None:
        self.req, self.response_id, self.created_at, self.model = req, response_id, created_at, model
        self.seq = 0
        self.output: list[dict[str, Any]] = []  # finished items, in output order
        self.next_index = 0
        self.text_item: tuple[int, str] | None = None  # (output_index, item id) of the open message
        self.text = ""
        self.calls: dict[int, _Call] = {}  # by the chat tool call's index
        self.finish: Any = None

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        out = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return out

    def start(self) -> list[dict[str, Any]]:
        response = skeleton(self.req, self.response_id, self.created_at, self.model)
        return [self.event("response.created", response=response),
                self.event("response.in_progress", response=response)]

    def chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._text_delta(content)
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                if isinstance(call, dict):
                    events += self._call_delta(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return events

    def _text_delta(self, delta: str) -> list[dict[str, Any]]:
        events = []
        if self.text_item is None:
            self.text_item = (self.next_index, new_id("msg"))
            self.next_index += 1
            index, item_id = self.text_item
            item = message_item("", "in_progress", item_id)
            item["content"] = []
            events.append(self.event("response.output_item.added", output_index=index, item=item))
            events.append(self.event("response.content_part.added", item_id=item_id, output_index=index,
                                     content_index=0,
                                     part={"type": "output_text", "text": "", "annotations": [], "logprobs": []}))
        index, item_id = self.text_item
        self.text += delta
        events.append(self.event("response.output_text.delta", item_id=item_id, output_index=index,
                                 content_index=0, delta=delta, logprobs=[]))
        return events

    def _call_delta(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events = []
        key = call.get("index", 0) if isinstance(call.get("index", 0), int) else 0
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        state = self.calls.get(key)
        if state is None:
            state = _Call(self.next_index, new_id("fc"), str(call.get("id") or new_id("call")),
                          str(fn.get("name") or ""))
            self.next_index += 1
            self.calls[key] = state
            item = call_item(state.call_id, state.name, "", "in_progress", state.item_id)
            events.append(self.event("response.output_item.added", output_index=state.output_index, item=item))
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            state.arguments += args
            events.append(self.event("response.function_call_arguments.delta", item_id=state.item_id,
                                     output_index=state.output_index, delta=args))
        return events

    def _close_items(self) -> list[dict[str, Any]]:
        closing: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []  # (output index, item, its events)
        if self.text_item is not None:
            index, item_id = self.text_item
            part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
            item = message_item(self.text, "completed", item_id)
            closing.append((index, item, [
                self.event("response.output_text.done", item_id=item_id, output_index=index, content_index=0,
                           text=self.text, logprobs=[]),
                self.event("response.content_part.done", item_id=item_id, output_index=index, content_index=0,
                           part=part),
                self.event("response.output_item.done", output_index=index, item=item)]))
        for state in self.calls.values():
            item = call_item(state.call_id, state.name, state.arguments, "completed", state.item_id)
            closing.append((state.output_index, item, [
                self.event("response.function_call_arguments.done", item_id=state.item_id,
                           output_index=state.output_index, name=state.name, arguments=state.arguments),
                self.event("response.output_item.done", output_index=state.output_index, item=item)]))
        closing.sort(key=lambda entry: entry[0])
        self.output = [item for _, item, _ in closing]
        events = [e for _, _, evs in closing for e in evs]
        first = min((e["sequence_number"] for e in events), default=0)
        for seq, event in enumerate(events, start=first):
            event["sequence_number"] = seq  # numbered in the order they are sent
        return events

    def complete(self, charged: dict[str, Any], receipt: dict[str, Any]) -> list[dict[str, Any]]:
        """The closing events: each open item done, then response.completed (or .incomplete) with the usage
        charged and the receipt."""
        events = self._close_items()
        status, incomplete = finish_status(self.finish)
        response = skeleton(self.req, self.response_id, self.created_at, self.model, status)
        response.update(output=self.output, usage=charged, incomplete_details=incomplete, switchboard=receipt)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [*events, self.event(kind, response=response)]

    def fail(self, error: dict[str, Any], receipt: dict[str, Any] | None) -> list[dict[str, Any]]:
        """An upstream failure mid-stream (refunded in full): an `error` event, then response.failed."""
        code = str(error.get("code") or "upstream_stream_interrupted")
        message = str(error.get("message") or "The provider's stream broke off.")
        response = skeleton(self.req, self.response_id, self.created_at, self.model, "failed")
        response.update(error={"code": code, "message": message}, switchboard=receipt)
        return [self.event("error", code=code, message=message, param=None),
                self.event("response.failed", response=response)]
