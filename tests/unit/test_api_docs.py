from tools import apidocs


def test_shipped_openapi_and_asyncapi_documents_are_current() -> None:
    assert apidocs.main(["--check"]) == 0, "run `python -m tools.apidocs` and commit docs/"


def test_asyncapi_documents_name_every_topic_with_its_message_schema() -> None:
    import json

    notifier = json.loads(apidocs.documents("notifier")[apidocs.DOCS / "asyncapi" / "notifier.json"])
    channels = {c["address"] for c in notifier["channels"].values()}
    assert channels == {"schedule.users.v1", "notifier.commands.v1", "notifier.deliveries.v1"}
    assert {"UserSnapshot", "SendNotification", "NotificationQueued"} <= set(notifier["components"]["schemas"])
