"""REST API for review sessions: list, create, read and change them (admins change); add turns
as items and list them; the reviewer's queue (Next, an item with its labels, label, skip); an
admin's final label; agreement and disagreements. Thin: authorize, check the body's shape, call
review.services / review.queue / review.session_selectors.

A session the user may not work in answers 404, as one that does not exist: whether it exists
is not theirs to know. Writes only admins may make answer 403 to everyone else."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.apis import RatingOutputSerializer
from review import queue, services, session_selectors
from review.models import ReviewItem, ReviewSession
from review.session_serializers import (
    DisagreementSerializer,
    ItemsAddedSerializer,
    ItemsAddSerializer,
    LabelInputSerializer,
    ReviewItemDetailSerializer,
    ReviewItemSerializer,
    ReviewItemWorkSerializer,
    ReviewSessionInputSerializer,
    ReviewSessionSerializer,
    SessionAgreementSerializer,
    SettleInputSerializer,
    SkipInputSerializer,
    agreement_data,
    item_data,
    item_work_data,
    labels_data,
    rating_data,
    session_data,
)
from reviewapp import roles
from reviewapp.api import IsAdminForWrites


class IsAdminForSessionWrites(IsAdminForWrites):
    message = "Only admins may create or change review sessions."


def _session(request: Request, pk: int) -> ReviewSession:
    return session_selectors.session_get_for_user(request.user, pk)


def _session_response(session: ReviewSession, request: Request, code: int = 200) -> Response:
    session = _with_related(ReviewSession.objects.filter(pk=session.pk)).get()
    progress = session_selectors.session_progress(session, request.user)
    return Response(session_data(session, progress), status=code)


def _with_related(sessions):
    return sessions.select_related("created_by").prefetch_related(
        "schema_links__schema", "deployments", "assigned_users", "assigned_groups"
    )


def _session_fields(request: Request) -> dict:
    # The shape only, every field optional: review.services reports what is missing together
    # with every other problem, and saves nothing.
    body = ReviewSessionInputSerializer(data=request.data, partial=True)
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


class SessionListApi(APIView):
    permission_classes = [IsAdminForSessionWrites]
    pagination_class = PageNumberPagination  # also tells the OpenAPI schema the page's shape

    @extend_schema(responses=ReviewSessionSerializer(many=True))
    def get(self, request: Request) -> Response:
        """The sessions you work in (every one for admins), newest first, with progress."""
        sessions = _with_related(session_selectors.sessions_for_user(request.user))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(sessions, request, view=self)
        return paginator.get_paginated_response(
            [session_data(s, session_selectors.session_progress(s, request.user)) for s in page]
        )

    @extend_schema(request=ReviewSessionInputSerializer, responses={201: ReviewSessionSerializer})
    def post(self, request: Request) -> Response:
        """Create a session (admins). Every problem is reported at once; nothing is saved."""
        session = services.session_save(user=request.user, data=_session_fields(request))
        return _session_response(session, request, status.HTTP_201_CREATED)


class SessionDetailApi(APIView):
    permission_classes = [IsAdminForSessionWrites]

    @extend_schema(responses=ReviewSessionSerializer)
    def get(self, request: Request, pk: int) -> Response:
        """The session with its progress (yours and every reviewer's)."""
        session = _session(request, pk)
        services.session_pull_new(session)  # a saved filter's new turns count in the progress
        return _session_response(session, request)

    @extend_schema(request=ReviewSessionInputSerializer, responses=ReviewSessionSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        """Change the fields given (admins), e.g. `{"state": "closed"}` to close it: a closed
        session takes no labels, skips or new items until it is opened again."""
        session = _session(request, pk)
        services.session_save(user=request.user, data=_session_fields(request), session=session)
        return _session_response(session, request)


class SessionItemsApi(APIView):
    permission_classes = [IsAdminForSessionWrites]
    pagination_class = PageNumberPagination

    @extend_schema(responses=ReviewItemSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        """The session's items, oldest first (the order Next offers them), each with where you
        stand on it."""
        items = session_selectors.session_items(_session(request, pk), request.user)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response([item_data(item) for item in page])

    @extend_schema(request=ItemsAddSerializer, responses=ItemsAddedSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Add turns (admins): `{"request_ids": [...]}`, or `{"filters": {...}}` for every turn
        the requests page's filters match. Turns already in are left as they are; a turn of
        another deployment, or an unknown request id, adds nothing at all."""
        session = _session(request, pk)
        body = ItemsAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if "request_ids" in body.validated_data:
            added = services.items_add_by_request_ids(
                session=session,
                user=request.user,
                request_ids=body.validated_data["request_ids"],
            )
        else:
            added = services.items_add_matching(
                session=session, user=request.user, filters=body.validated_data["filters"]
            )
        return Response({"added": added, "items": session.items.count()})


def _work_data(item: ReviewItem, request: Request) -> dict:
    return item_work_data(item, session_selectors.item_place(item, request.user))


class SessionNextApi(APIView):
    @extend_schema(request=None, responses={200: ReviewItemWorkSerializer, 204: None})
    def post(self, request: Request, pk: int) -> Response:
        """Your item to work on, claimed for you until `lease_until`: the one you hold, else
        the oldest that still needs a reviewer and that you have neither labelled nor skipped.
        204 when nothing is left for you."""
        session = _session(request, pk)
        item = queue.item_next(session=session, reviewer=request.user)
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_work_data(item, request))


class SessionItemDetailApi(APIView):
    @extend_schema(responses=ReviewItemDetailSerializer)
    def get(self, request: Request, pk: int, item_id: int) -> Response:
        """The item with its turn and its labels: yours, or every reviewer's for an admin."""
        session = _session(request, pk)
        item = queue.item_get(session=session, item_id=item_id, user=request.user)
        if roles.is_admin(request.user):
            labels = session_selectors.item_labels(item)
            consensus = rating_data(item.consensus)
        else:
            mine = session_selectors.my_label(item, request.user)
            labels = [(request.user.get_username(), mine)] if mine else []
            consensus = None
        return Response(
            {
                **_work_data(item, request),
                "labels": labels_data(labels),
                "consensus": consensus,
            }
        )


@contextmanager
def _errors_as_sent() -> Iterator[None]:
    """feedback.services names a text assessment's problems `text_assessments` (the protocol's
    list); this API takes one `text_assessment`, so its errors are named so."""
    try:
        yield
    except ValidationError as exc:
        if hasattr(exc, "error_dict") and "text_assessments" in exc.error_dict:
            errors = exc.message_dict
            errors["text_assessment"] = errors.pop("text_assessments")
            raise ValidationError(errors) from exc
        raise


def _item(request: Request, pk: int, item_id: int) -> ReviewItem:
    session = _session(request, pk)
    return queue.item_get(session=session, item_id=item_id, user=request.user)


class ItemLabelApi(APIView):
    @extend_schema(request=LabelInputSerializer, responses={201: RatingOutputSerializer})
    def post(self, request: Request, pk: int, item_id: int) -> Response:
        """Save your label of the item: a new rating version, checked against the session's
        label schemas (the required ones too) and forwarded like any rating. Labelling it again
        replaces your label."""
        item = _item(request, pk, item_id)
        body = LabelInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with _errors_as_sent():
            rating = queue.item_label_save(
                item=item,
                reviewer=request.user,
                text_assessment=body.validated_data["text_assessment"],
                retrieval_assessments=body.validated_data.get("retrieval_assessments"),
            )
        return Response(rating_data(rating), status=status.HTTP_201_CREATED)


class ItemSkipApi(APIView):
    @extend_schema(request=SkipInputSerializer, responses={204: None})
    def post(self, request: Request, pk: int, item_id: int) -> Response:
        """Give the item back, with a reason if you like: another reviewer gets it, you do
        not get it again. An item you labelled cannot be skipped."""
        item = _item(request, pk, item_id)
        body = SkipInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        queue.item_skip(
            item=item, reviewer=request.user, reason=body.validated_data.get("reason", "")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ItemSettleApi(APIView):
    permission_classes = [IsAdminForSessionWrites]

    @extend_schema(request=SettleInputSerializer, responses={201: RatingOutputSerializer})
    def post(self, request: Request, pk: int, item_id: int) -> Response:
        """The final label of an item (admins): saved as the consensus rating and forwarded."""
        item = _item(request, pk, item_id)
        body = SettleInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with _errors_as_sent():
            rating = queue.item_settle(
                item=item,
                admin=request.user,
                text_assessment=body.validated_data["text_assessment"],
            )
        return Response(rating_data(rating), status=status.HTTP_201_CREATED)


class SessionAgreementApi(APIView):
    @extend_schema(responses=SessionAgreementSerializer)
    def get(self, request: Request, pk: int) -> Response:
        """Agreement between the session's reviewers per label schema (thumbs and categorical:
        nominal; numeric: interval), over the items with two or more labels."""
        session = _session(request, pk)
        return Response(agreement_data(session_selectors.session_agreement(session)))


class SessionDisagreementsApi(APIView):
    @extend_schema(responses=DisagreementSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        """Items whose reviewers answered a label schema differently, oldest first (at most
        200), with every reviewer's label side by side and the final label once an admin
        settled it: what the session's page shows everyone who works in it."""
        session = _session(request, pk)
        return Response(
            [
                {
                    "item": d.item.pk,
                    "request_id": d.item.turn.databricks_request_id,
                    "label_schemas": d.schemas,
                    "labels": labels_data(d.labels),
                    "consensus": rating_data(d.item.consensus),
                }
                for d in session_selectors.session_disagreements(session, request.user)
            ]
        )
