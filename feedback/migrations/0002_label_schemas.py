"""Questions become label schemas shared by every deployment; each deployment keeps its own as
its default set, in the same order, and every rating is kept.

Questions of the same name and the same answers (kind, options, range) become one schema. A
name two deployments used for different answers keeps its name on the first deployment; the
others get `<name>_<deployment id>`, and their ratings are renamed with it, so each rating still
answers the schema it was given for. `answer_correct` is taken from the start by the default
thumbs question (deployments without questions asked it, and still do), so a non-thumbs
`answer_correct` is renamed the same way. The built-in schemas are added: `answer_correct`, and
the expectations `expected_response`, `expected_facts` and `guidelines`.
"""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

BUILT_IN = [
    ("answer_correct", "feedback", "thumbs", "Is this response correct for your question?"),
    ("expected_response", "expectation", "text", "What should the answer have been?"),
    ("expected_facts", "expectation", "text_list", "Facts a correct answer states"),
    ("guidelines", "expectation", "text_list", "Guidelines a good answer follows"),
]


DEFAULT_NAME = "answer_correct"
THUMBS_ANSWERS = ("thumbs", [], None, None)


def _answers(question) -> tuple:
    return (question.kind, list(question.options or []), question.min_value, question.max_value)


def _taken(name: str, answers: tuple, made: dict) -> bool:
    """Whether `name` is a schema for other answers (the default's name always is, but for
    thumbs up/down)."""
    if name in made:
        return made[name][1] != answers
    return name == DEFAULT_NAME and answers != THUMBS_ANSWERS


def _free_name(name: str, deployment_id: int, answers: tuple, made: dict) -> str:
    """`<name>_<deployment id>` (a further `_2`, `_3` when a question already has that name),
    the name cut so that the suffix stays within the 64 characters."""
    suffix, n = f"_{deployment_id}", 1
    while True:
        candidate = f"{name[: 64 - len(suffix)]}{suffix}"
        if not _taken(candidate, answers, made):
            return candidate
        n += 1
        suffix = f"_{deployment_id}_{n}"


def questions_to_label_schemas(apps, schema_editor):
    Question = apps.get_model("feedback", "Question")
    LabelSchema = apps.get_model("feedback", "LabelSchema")
    Link = apps.get_model("feedback", "DeploymentLabelSchema")
    Rating = apps.get_model("feedback", "Rating")
    made: dict[str, tuple] = {}  # schema name -> (schema, the answers it takes)
    renames: dict[int, dict[str, str]] = {}  # deployment id -> {question name: schema name}
    for question in Question.objects.order_by("deployment_id", "order", "pk"):
        name, answers = question.name, _answers(question)
        if _taken(name, answers, made):
            name = _free_name(name, question.deployment_id, answers, made)
            renames.setdefault(question.deployment_id, {})[question.name] = name
        if name not in made:
            schema = LabelSchema.objects.create(
                name=name,
                title=question.text,
                kind="feedback",
                input_type=question.kind,
                options=question.options or [],
                min_value=question.min_value,
                max_value=question.max_value,
            )
            made[name] = (schema, answers)
        Link.objects.create(
            deployment_id=question.deployment_id, schema_id=made[name][0].pk, order=question.order
        )
    for deployment_id, names in renames.items():
        _rename_ratings(Rating, deployment_id, names)
    for name, kind, input_type, title in BUILT_IN:
        if name not in made:
            LabelSchema.objects.get_or_create(
                name=name, defaults={"kind": kind, "input_type": input_type, "title": title}
            )


def _rename_ratings(Rating, deployment_id: int, names: dict[str, str]) -> None:
    """Every rename of the deployment at once: a question renamed to `<name>_<id>` may take the
    name of another question of the same deployment (itself renamed), whose answers one rename
    at a time would overwrite."""
    for rating in Rating.objects.filter(deployment_id=deployment_id).iterator():
        given = rating.text_assessment.get("ratings", {})
        if any(old in given for old in names):
            rating.text_assessment["ratings"] = {
                names.get(key, key): value for key, value in given.items()
            }
            rating.save(update_fields=["text_assessment"])


def label_schemas_to_questions(apps, schema_editor):
    """Back: each deployment's default set as its questions (the kinds questions had)."""
    Question = apps.get_model("feedback", "Question")
    Link = apps.get_model("feedback", "DeploymentLabelSchema")
    for link in Link.objects.select_related("schema"):
        schema = link.schema
        if schema.input_type not in ("thumbs", "categorical", "numeric", "text"):
            continue
        Question.objects.create(
            deployment_id=link.deployment_id,
            name=schema.name,
            text=schema.title,
            kind=schema.input_type,
            options=schema.options,
            min_value=schema.min_value,
            max_value=schema.max_value,
            order=link.order,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0007_requestlog_text_search_trigrams"),
        ("feedback", "0001_ratings_and_deliveries"),
    ]

    operations = [
        migrations.CreateModel(
            name="LabelSchema",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        error_messages={"unique": "A label schema with this name already exists."},
                        max_length=64,
                        unique=True,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[a-z][a-z0-9_]*\\Z",
                                "Use lowercase letters, digits and underscores, starting with a letter (it is the rating's key, e.g. answer_correct).",
                            )
                        ],
                    ),
                ),
                (
                    "title",
                    models.CharField(help_text="The question the reviewer sees.", max_length=500),
                ),
                ("instruction", models.TextField(blank=True, help_text="Markdown: how to decide.")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("feedback", "Feedback (a judgement of the answer)"),
                            ("expectation", "Expectation (what the answer should have been)"),
                        ],
                        default="feedback",
                        max_length=12,
                    ),
                ),
                (
                    "input_type",
                    models.CharField(
                        choices=[
                            ("thumbs", "Thumbs up / down"),
                            ("categorical", "One of several options"),
                            ("categorical_list", "Any of several options"),
                            ("numeric", "A number between min and max"),
                            ("text", "Free text"),
                            ("text_list", "A list of texts"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "options",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text='Categorical (list) only: a list of strings, e.g. ["yes", "no"].',
                    ),
                ),
                ("min_value", models.FloatField(blank=True, help_text="Numeric only.", null=True)),
                ("max_value", models.FloatField(blank=True, help_text="Numeric only.", null=True)),
                (
                    "step",
                    models.FloatField(
                        blank=True,
                        help_text="Numeric only: values are min + a whole number of steps.",
                        null=True,
                    ),
                ),
                (
                    "max_length",
                    models.PositiveIntegerField(
                        blank=True, help_text="Text (list) only: characters per text.", null=True
                    ),
                ),
                (
                    "max_count",
                    models.PositiveIntegerField(
                        blank=True, help_text="Text list only: how many texts at most.", null=True
                    ),
                ),
                (
                    "enable_comment",
                    models.BooleanField(
                        default=False, help_text="Reviewers may say why, next to their label."
                    ),
                ),
                (
                    "required",
                    models.BooleanField(
                        default=False,
                        help_text="A label in a review session cannot be saved without it.",
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["name"],
            },
        ),
        migrations.CreateModel(
            name="DeploymentLabelSchema",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("order", models.PositiveIntegerField(default=0)),
                (
                    "deployment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="label_schema_links",
                        to="agents.deployment",
                    ),
                ),
                (
                    "schema",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="deployment_links",
                        to="feedback.labelschema",
                    ),
                ),
            ],
            options={
                "ordering": ["order", "pk"],
            },
        ),
        migrations.AddConstraint(
            model_name="deploymentlabelschema",
            constraint=models.UniqueConstraint(
                fields=("deployment", "schema"), name="deployment_label_schema_once"
            ),
        ),
        migrations.RunPython(questions_to_label_schemas, label_schemas_to_questions),
        migrations.DeleteModel(
            name="Question",
        ),
    ]
