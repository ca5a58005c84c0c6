"""Review findings on the review-sessions change: each test shows one bug (it failed before the
fix committed with it)."""

import pytest

from review import queue, services
from tests.review.sessions_support import label, make_reviewer, make_session
from tests.support.turns import logged_turn

pytestmark = pytest.mark.django_db


def test_disagreements_leave_out_items_of_deployments_i_may_not_see(
    client, api_client, admin_user, deployment_factory, reviewer, django_user_model
):
    bot = deployment_factory(display_name="Bot")
    secret = deployment_factory(display_name="Secret")
    carol = make_reviewer(django_user_model, "carol")
    secret.allowed_users.set([carol])
    session, _ = make_session(admin_user, bot, [reviewer, carol], turns=0, per_item=2)
    services.session_save(
        user=admin_user, session=session, data={"deployments": [bot.pk, secret.pk]}
    )
    hidden = logged_turn(secret, admin_user, request="The secret merger question")
    services.items_add(session=session, user=admin_user, turns=[hidden])
    item = session.items.get()
    queue.item_label_save(item=item, reviewer=carol, text_assessment=label("positive"))
    queue.item_label_save(item=item, reviewer=admin_user, text_assessment=label("negative"))

    # Rita works in the session but may not see the Secret deployment: item_get says 404 ...
    api_client.force_authenticate(reviewer)
    base = f"/api/v1/review-sessions/{session.pk}/"
    assert api_client.get(f"{base}items/{item.pk}/").status_code == 404
    # ... so the disagreements must not show it either (request id, labels, question).
    assert api_client.get(f"{base}disagreements/").json() == []
    client.force_login(reviewer)
    html = client.get(f"/review/sessions/{session.pk}/").content.decode()
    assert "The secret merger question" not in html
