"""API of the compare view: `GET /api/v1/programs/{slug}/compare?versions=1&versions=2&dataset=5` answers the
aligned per-example comparison (the same governance.comparisons the portal shows); `POST` with the same fields
as JSON asks the system for the evaluations the comparison lacks (202) and answers the comparison as it stands.

Serializers here check shape only; the program must be visible (404 otherwise, no existence leak), versions and
dataset must belong to it (400 naming the field), and requesting evaluations is the actions' decision (403).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance import comparisons
from governance.api.permissions import restrict_to_visible
from governance.errors import InvalidInput, NotFound
from governance.models import Dataset, Program, PromptVersion

MAX_VERSIONS = 10


class CompareQuerySerializer(serializers.Serializer):
    versions = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**31 - 1),
                                     min_length=2, max_length=MAX_VERSIONS,
                                     help_text="Version numbers, two or more; the first is the reference.")
    dataset = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="A dataset id of the program.")
    rows = serializers.ChoiceField(choices=list(comparisons.FILTERS), default="all", required=False,
                                   help_text="Which examples: all, newly_wrong, newly_right, both_wrong.")
    page = serializers.IntegerField(min_value=1, max_value=10**6, default=1, required=False)
    metric = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                   help_text="A registered metric (e.g. judge); the program's own by default.")


class CompareRequestSerializer(serializers.Serializer):
    versions = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**31 - 1),
                                     min_length=2, max_length=MAX_VERSIONS)
    dataset = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    metric = serializers.CharField(required=False, allow_blank=True, max_length=200)


class ColumnSerializer(serializers.Serializer):
    label = serializers.CharField()
    version = serializers.IntegerField(source="version.number", allow_null=True)
    evaluation = serializers.IntegerField(source="evaluation.pk", allow_null=True)
    status = serializers.CharField(source="state")
    score = serializers.FloatField(source="evaluation.score", allow_null=True)
    examples = serializers.IntegerField(source="evaluation.examples", allow_null=True)
    errors = serializers.IntegerField(source="evaluation.errors", allow_null=True)


class PairSerializer(serializers.Serializer):
    version = serializers.IntegerField(source="column.version.number")
    reference = serializers.IntegerField(source="reference.version.number")
    paired = serializers.SerializerMethodField()

    def get_paired(self, pair: comparisons.Pair) -> dict[str, Any]:
        return pair.paired.to_dict()


class CellSerializer(serializers.Serializer):
    predicted = serializers.DictField()
    raw = serializers.CharField(allow_blank=True)
    score = serializers.FloatField()
    correct = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    feedback = serializers.DictField(child=serializers.CharField(allow_blank=True))


class RowSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    change = serializers.CharField()
    inputs = serializers.DictField()
    expected = serializers.DictField()
    cells = CellSerializer(many=True, allow_null=True)


class ComparisonSerializer(serializers.Serializer):
    dataset = serializers.IntegerField(source="dataset.pk")
    metric = serializers.CharField()
    dataset_hash = serializers.CharField(source="dataset.content_hash")
    ready = serializers.BooleanField()
    columns = ColumnSerializer(many=True)
    pairs = PairSerializer(many=True)
    counts = serializers.DictField(child=serializers.IntegerField())
    rows_filter = serializers.CharField(source="show")
    page = serializers.SerializerMethodField()
    pages = serializers.SerializerMethodField()
    rows = RowSerializer(many=True)

    def get_page(self, comparison: comparisons.Comparison) -> int | None:
        return comparison.page.number if comparison.page is not None else None

    def get_pages(self, comparison: comparisons.Comparison) -> int | None:
        return comparison.page.paginator.num_pages if comparison.page is not None else None


class CompareView(APIView):
    """Versions of a program side by side on one of its datasets, from the system's evaluations only."""

    def _picked(self, slug: str, data: dict[str, Any]) -> tuple[Program, list[PromptVersion], Dataset]:
        program = restrict_to_visible(Program.objects.all(), self.request.user, "").filter(slug=slug).first()
        if program is None:
            raise NotFound(f"no program {slug!r}")
        numbers = list(dict.fromkeys(data["versions"]))
        found = {v.number: v for v in program.versions.filter(number__in=numbers)}
        unknown = [n for n in numbers if n not in found]
        if unknown:
            raise InvalidInput(f"program {slug} has no version {', '.join(map(str, unknown))}", field="versions")
        if len(numbers) < 2:
            raise InvalidInput("pick at least two different versions to compare", field="versions")
        dataset = program.datasets.filter(pk=data["dataset"]).first()
        if dataset is None:
            raise InvalidInput(f"program {slug} has no dataset {data['dataset']}", field="dataset")
        return program, [found[n] for n in numbers], dataset

    @extend_schema(parameters=[CompareQuerySerializer], responses=ComparisonSerializer)
    def get(self, request: Request, slug: str) -> Response:
        query = CompareQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        program, versions, dataset = self._picked(slug, query.validated_data)
        metric = comparisons.comparable_metric(program, query.validated_data.get("metric"))
        comparison = comparisons.compare(comparisons.version_columns(program, versions, dataset, metric), dataset,
                                         show=query.validated_data["rows"], page=query.validated_data["page"])
        return Response(ComparisonSerializer(comparison).data)

    @extend_schema(request=CompareRequestSerializer, responses={202: ComparisonSerializer})
    def post(self, request: Request, slug: str) -> Response:
        body = CompareRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        program, versions, dataset = self._picked(slug, body.validated_data)
        metric = comparisons.comparable_metric(program, body.validated_data.get("metric"))
        comparisons.request_missing(program, versions, dataset, actor=request.user, metric=metric)
        comparison = comparisons.compare(comparisons.version_columns(program, versions, dataset, metric), dataset)
        return Response(ComparisonSerializer(comparison).data, status=status.HTTP_202_ACCEPTED)
