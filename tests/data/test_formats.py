"""Formats: which one a file is in, what each row becomes, and the row errors a bad row gets."""

import hashlib
import json

import pytest

from tunery.data import DataFileError, Example, Message, RowError, detect_format, load_examples, to_example

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def numbered(*records):
    return [(i, record) for i, record in enumerate(records, start=1)]


# -- detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record, expected",
    [
        (CHAT, "chat"),
        ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}, "chat"),
        ({"instruction": "Add", "input": "1 2", "output": "3"}, "instruction"),
        ({"instruction": "Add 1 and 2", "response": "3"}, "instruction"),
        ({"prompt": "1 + 1 =", "completion": " 2"}, "completion"),
        ({"text": "great film", "label": "pos"}, "classification"),
        ({"text": "Once upon a time"}, "text"),
    ],
)
def test_each_format_is_detected_from_its_fields(record, expected):
    assert detect_format(numbered(record, record)) == expected


def test_mixed_formats_name_the_first_row_that_differs(tmp_path):
    rows = numbered(CHAT, CHAT, {"prompt": "a", "completion": "b"}, {"text": "c"})
    with pytest.raises(DataFileError) as info:
        detect_format(rows, path=tmp_path / "train.jsonl")
    assert str(info.value) == (
        f"{tmp_path / 'train.jsonl'}:3: looks like 'completion' but earlier rows are 'chat' "
        "(use one format per file or set data.format)"
    )
    assert info.value.line == 3


def test_mixed_formats_in_a_json_file_name_the_record():
    rows = numbered({"text": "a"}, CHAT)
    with pytest.raises(
        DataFileError, match=r"^train.json: record 2: looks like 'chat' but earlier rows are 'text'"
    ):
        detect_format(rows, path="train.json")


def test_text_rows_in_a_labelled_file_make_it_classification_not_mixed():
    assert (
        detect_format(numbered({"text": "a"}, {"text": "b", "label": 1}, {"text": "c"})) == "classification"
    )


def test_rows_without_known_fields_do_not_vote():
    assert detect_format(numbered({"id": 1}, {"text": "a"})) == "text"


def test_no_recognisable_row_lists_the_fields_found():
    with pytest.raises(DataFileError) as info:
        detect_format(numbered({"question": "q", "id": 1}), path="x.jsonl")
    assert str(info.value) == (
        "x.jsonl: cannot tell the format from the fields: id, question "
        "(expected messages (chat), instruction + output (instruction), prompt + completion (completion), "
        "text + label (classification) or text (text); or set data.format)"
    )


# -- conversion ---------------------------------------------------------------------------


def test_chat_row_keeps_its_messages():
    record = {"messages": [{"role": "system", "content": "Be brief."}, *CHAT["messages"]]}
    assert to_example(4, record, "chat") == Example(
        line=4,
        kind="chat",
        messages=(Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!")),
    )


def test_sharegpt_conversations_map_human_and_gpt_to_user_and_assistant():
    record = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    example = to_example(1, record, "chat")
    assert example.messages == (Message("user", "Hi"), Message("assistant", "Yo"))


def test_instruction_becomes_a_chat_with_input_after_a_blank_line():
    record = {"system": "You add.", "instruction": "Add these", "input": "1 2", "output": "3"}
    assert to_example(1, record, "instruction").messages == (
        Message("system", "You add."),
        Message("user", "Add these\n\n1 2"),
        Message("assistant", "3"),
    )


def test_instruction_aliases_response_and_context_and_empty_input_is_no_input():
    example = to_example(1, {"instruction": "Say hi", "context": "", "response": "hi"}, "instruction")
    assert example.messages == (Message("user", "Say hi"), Message("assistant", "hi"))


def test_completion_text_and_classification_rows():
    assert to_example(1, {"prompt": "1+1=", "completion": "2"}, "completion") == Example(
        line=1, kind="completion", prompt="1+1=", completion="2"
    )
    assert to_example(2, {"text": "abc"}, "text") == Example(line=2, kind="text", text="abc")
    assert to_example(3, {"text": "good", "label": 1}, "classification") == Example(
        line=3, kind="classification", text="good", label="1"
    )


def test_turns_after_the_last_answer_are_dropped_with_a_warning():
    record = {"messages": [*CHAT["messages"], {"role": "user", "content": "And?"}]}
    warnings: list[RowError] = []
    example = to_example(5, record, "chat", warnings=warnings)
    assert example.messages == (Message("user", "Hi"), Message("assistant", "Hello!"))
    assert [str(w) for w in warnings] == [
        "line 5, field 'messages': ends with a 'user' turn; 1 turn(s) after the last answer dropped"
    ]


def test_empty_system_field_is_a_warning_not_an_error():
    warnings: list[RowError] = []
    example = to_example(2, {"instruction": "a", "output": "b", "system": ""}, "instruction", warnings)
    assert example.messages == (Message("user", "a"), Message("assistant", "b"))
    assert [str(w) for w in warnings] == [
        "line 2, field 'system': optional field is empty; no system message is used"
    ]


# -- bad rows -----------------------------------------------------------------------------


def chat(*turns):
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


@pytest.mark.parametrize(
    "fmt, record, expected",
    [
        ("chat", {"text": "x"}, "field 'messages': required field is missing"),
        ("chat", {"messages": None}, "field 'messages': required field is null"),
        ("chat", {"messages": "Hi"}, "field 'messages': must be a list of messages, got a string"),
        ("chat", {"messages": []}, "field 'messages': required field is empty"),
        (
            "chat",
            {"messages": ["Hi"]},
            "field 'messages[0]': must be an object with a role and a content, got a string",
        ),
        ("chat", {"messages": [{"content": "Hi"}]}, "field 'messages[0].role': required field is missing"),
        (
            "chat",
            chat(("user", "Hi"), ("bot", "Yo")),
            "field 'messages[1].role': unknown role 'bot'; expected one of: system, user, assistant",
        ),
        (
            "chat",
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "model", "value": "Yo"}]},
            "field 'conversations[1].from': unknown role 'model'; expected one of: human, gpt, system, user, assistant",
        ),
        (
            "chat",
            chat(("user", "Hi"), ("assistant", "")),
            "field 'messages[1].content': required field is empty",
        ),
        (
            "chat",
            {"messages": [{"role": "user", "content": ["Hi"]}]},
            "field 'messages[0].content': must be a string, got a list",
        ),
        (
            "chat",
            chat(("user", "Hi"), ("user", "Hello?")),
            "field 'messages': has no assistant turn, so there is nothing to learn",
        ),
        (
            "chat",
            chat(("user", "Hi"), ("system", "Be kind"), ("assistant", "Yo")),
            "field 'messages[1].role': a system message may only come first",
        ),
        ("instruction", {"instruction": "Do it"}, "field 'output': required field is missing"),
        ("instruction", {"instruction": "", "output": "x"}, "field 'instruction': required field is empty"),
        (
            "instruction",
            {"instruction": "a", "output": "b", "input": 3},
            "field 'input': must be a string, got an integer",
        ),
        ("completion", {"prompt": "a"}, "field 'completion': required field is missing"),
        (
            "completion",
            {"prompt": "a", "completion": 2.5},
            "field 'completion': must be a string, got a number",
        ),
        ("text", {"text": ""}, "field 'text': required field is empty"),
        ("classification", {"text": "a"}, "field 'label': required field is missing"),
        (
            "classification",
            {"text": "a", "label": [1]},
            "field 'label': must be a string or an integer, got a list",
        ),
        (
            "classification",
            {"text": "a", "label": True},
            "field 'label': must be a string or an integer, got a boolean",
        ),
        (
            "classification",
            {"text": "a", "label": 0.5},
            "field 'label': must be a string or an integer, got a number",
        ),
        ("classification", {"text": "a", "label": ""}, "field 'label': required field is empty"),
    ],
)
def test_bad_rows_become_row_errors(fmt, record, expected):
    assert str(to_example(9, record, fmt)) == f"line 9, {expected}"


# -- load_examples ------------------------------------------------------------------------


def test_load_examples_collects_every_bad_row_and_keeps_the_good_ones(tmp_path):
    bad_role = chat(("user", "Hi"), ("robot", "Yo"))
    path = write_jsonl(tmp_path / "train.jsonl", [CHAT, bad_role, CHAT, {"messages": []}, CHAT])
    data = load_examples(path)
    assert data.format == "chat"
    assert data.n_rows == 5
    assert [e.line for e in data.examples] == [1, 3, 5]
    assert [(e.line, e.field) for e in data.errors] == [(2, "messages[1].role"), (4, "messages")]
    assert data.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_explicit_format_skips_detection_and_turns_other_rows_into_errors(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "a"}, {"prompt": "p", "completion": "c"}])
    data = load_examples(path, format="completion")
    assert [e.line for e in data.examples] == [2]
    assert [str(e) for e in data.errors] == ["line 1, field 'prompt': required field is missing"]


def test_load_examples_from_csv_classification(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood film,pos\nbad film,neg\n", encoding="utf-8")
    data = load_examples(path)
    assert (data.format, [(e.line, e.label) for e in data.examples]) == (
        "classification",
        [(2, "pos"), (3, "neg")],
    )


def test_unknown_format_lists_the_valid_ones(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [CHAT])
    with pytest.raises(DataFileError) as info:
        load_examples(path, format="sharegpt")
    assert str(info.value) == (
        f"{path}: unknown format 'sharegpt' (use one of: auto, chat, instruction, completion, text, classification)"
    )


def test_directory_hash_is_stable_and_follows_the_content(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"text": "a"}]).save_to_disk(tmp_path / "one")
    datasets.Dataset.from_list([{"text": "b"}]).save_to_disk(tmp_path / "two")
    first = load_examples(tmp_path / "one").content_hash
    assert first == load_examples(tmp_path / "one").content_hash
    assert first != load_examples(tmp_path / "two").content_hash
    assert len(first) == 64
