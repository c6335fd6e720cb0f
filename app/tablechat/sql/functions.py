"""The guard's function policy: an allow-list of functions known to be pure and read-only.

Anything not listed here is refused, wherever it appears: select list, WHERE, FROM, LATERAL,
subqueries, CTEs, window and aggregate calls (issue 11, class 5: a deny-list let
``LATERAL json_execute_serialized_sql(...)``, ``duckdb_settings()`` and ``pragma_platform()``
through). Names are grouped by kind (scalar, aggregate, window, table) and by dialect: what
DuckDB, PostgreSQL and SQLite share, then each one's own. A name is the function as written
in SQL, lower case.

sqlglot parses a function in one of two ways: into a typed class (``exp.Count``,
``exp.TimeToStr`` for DuckDB's ``strftime``) or into ``exp.Anonymous`` (``.name``). A typed
class is allowed when one of its sqlglot names is an allowed name, or when it is listed in
``TYPED`` (sqlglot's own names, such as ``TimeToStr``, that no database spells that way, and
the syntax sqlglot models as functions: AND, CASE, CAST, EXISTS ...).

``DENIED`` and ``DENIED_PREFIXES`` are not the policy (the allow-list is); they exist so that a
refusal says why: file readers, SQL hidden in strings, settings, sequences, logs, secrets.
"""

from __future__ import annotations

from sqlglot import exp

from .limits import series_size

# --- scalar -----------------------------------------------------------------------------------
_SCALAR_COMMON = """
abs acos asin atan atan2 ceil ceiling cos cot degrees exp floor ln log log10 mod pi power pow
radians round sign sin sqrt tan trunc cbrt gcd lcm greatest least
ascii chr concat concat_ws length char_length character_length octet_length bit_length lower
upper ltrim rtrim trim lpad rpad replace reverse substr substring left right position strpos
instr translate repeat split_part starts_with ends_with initcap md5 hex unhex format printf
coalesce nullif ifnull nvl iif
date time timestamp datetime current_date current_time current_timestamp localtime
localtimestamp now date_trunc date_part extract age make_date make_time make_timestamp to_char
to_date to_timestamp to_number
regexp_replace regexp_matches regexp_like regexp_substr regexp_count regexp_extract
regexp_extract_all regexp_full_match regexp_split_to_array
random uuid gen_random_uuid typeof
json_extract json_extract_string json_extract_path json_extract_path_text json_array_length
json_type json_valid json_object json_array json_keys json_quote
"""
_SCALAR_DUCKDB = """
acosh asinh atanh cosh sinh tanh isfinite isinf isnan even factorial fmod gamma lgamma log2
nextafter round_even roundbankers signbit bit_count xor ln
contains prefix suffix lcase ucase strlen len strip_accents nfc_normalize levenshtein
damerau_levenshtein hamming jaccard jaro_similarity jaro_winkler_similarity mismatches
editdist3 string_split string_split_regex str_split str_split_regex string_to_array split
regexp_escape like_escape ilike_escape not_like_escape not_ilike_escape ord unicode bar
format_bytes formatreadablesize formatreadabledecimalsize parse_formatted_bytes url_encode
url_decode base64 to_base64 from_base64 to_hex from_hex bin to_binary from_binary unbin
to_base sha1 sha256 hash md5_number md5_number_lower md5_number_upper left_grapheme
right_grapheme length_grapheme substring_grapheme array_to_string
century day dayname dayofmonth dayofweek dayofyear decade epoch epoch_ms epoch_us epoch_ns era
hour isodow isoyear julian last_day microsecond millennium millisecond minute month monthname
nanosecond quarter second week weekday weekofyear year yearweek date_diff datediff date_sub
datesub date_add datepart datetrunc time_bucket strftime strptime try_strptime today
make_timestamptz make_timestamp_ms make_timestamp_ns to_days to_hours to_minutes to_seconds
to_milliseconds to_microseconds to_weeks to_months to_quarters to_years to_decades
to_centuries to_millennia timezone timezone_hour timezone_minute ago days_in_month
normalized_interval get_current_timestamp get_current_time transaction_timestamp
current_localtime current_localtimestamp
list_value list_pack array_value list_extract list_element array_extract element_at
list_contains list_has array_contains array_has list_has_all list_has_any array_has_all
array_has_any list_position list_indexof array_position array_indexof list_concat list_cat
array_concat array_cat list_append array_append list_prepend array_prepend array_push_back
array_push_front array_pop_back array_pop_front list_slice array_slice list_sort array_sort
list_reverse_sort array_reverse_sort list_reverse array_reverse list_distinct array_distinct
list_unique array_unique list_intersect array_intersect list_zip array_zip list_resize
array_resize list_select array_select list_where array_where list_grade_up array_grade_up
grade_up list_transform array_transform list_apply array_apply apply list_filter
array_filter filter list_reduce array_reduce reduce flatten len array_length cardinality
list_aggregate list_aggr array_aggregate array_aggr list_sum list_avg list_min list_max
list_count list_first list_last list_median list_mode list_product list_any_value
list_string_agg list_bool_and list_bool_or list_stddev_pop list_stddev_samp list_var_pop
list_var_samp list_approx_count_distinct list_entropy list_histogram list_kurtosis
list_kurtosis_pop list_mad list_sem list_skewness list_bit_and list_bit_or list_bit_xor
list_cosine_distance list_cosine_similarity list_distance list_dot_product
list_inner_product list_negative_dot_product list_negative_inner_product
array_cosine_distance array_cosine_similarity array_distance array_dot_product
array_inner_product array_cross_product array_negative_dot_product
array_negative_inner_product generate_subscripts
struct_pack struct_extract struct_extract_at struct_insert struct_concat struct_keys
struct_values struct_has struct_contains struct_position struct_indexof row
map map_extract map_extract_value map_keys map_values map_entries map_from_entries
map_concat map_contains map_contains_entry map_contains_value
union_extract union_tag union_value
enum_code enum_first enum_last enum_range enum_range_boundary
json json_contains json_exists json_value json_structure json_transform
json_transform_strict from_json from_json_strict to_json array_to_json row_to_json
json_merge_patch json_pretty json_insert json_remove json_replace json_set json_strip_nulls
uuidv4 uuidv7 uuid_extract_timestamp uuid_extract_version equi_width_bins if switch
"""
_SCALAR_POSTGRES = """
div scale width_bucket btrim lengthb quote_ident quote_literal quote_nullable split_part
string_to_array array_to_string regexp_split_to_array to_hex sha224 sha256 sha384 sha512
date_bin make_interval justify_days justify_hours justify_interval isfinite clock_timestamp
statement_timestamp transaction_timestamp timeofday
array_length array_lower array_upper array_ndims array_dims array_position array_positions
array_remove array_replace array_cat array_append array_prepend cardinality
jsonb_extract_path jsonb_extract_path_text jsonb_array_length jsonb_typeof json_typeof
jsonb_build_object json_build_object jsonb_build_array json_build_array to_jsonb to_json
jsonb_object_keys json_object_keys jsonb_pretty num_nonnulls num_nulls
"""
_SCALAR_SQLITE = """
char hex like likelihood likely unlikely ltrim quote soundex julianday unixepoch strftime
timediff unicode iif printf format
"""

# --- aggregate --------------------------------------------------------------------------------
_AGGREGATE_COMMON = """
count sum avg min max string_agg group_concat array_agg bool_and bool_or every
stddev stddev_pop stddev_samp variance var_pop var_samp covar_pop covar_samp corr
regr_slope regr_intercept regr_r2 regr_count regr_avgx regr_avgy regr_sxx regr_sxy regr_syy
percentile_cont percentile_disc mode bit_and bit_or bit_xor total
"""
_AGGREGATE_DUCKDB = """
any_value arbitrary first last arg_max arg_min argmax argmin max_by min_by arg_max_null
arg_min_null count_if countif count_star approx_count_distinct approx_quantile approx_top_k
quantile quantile_cont quantile_disc reservoir_quantile median mad kurtosis kurtosis_pop
skewness entropy product sem favg fsum kahan_sum sumkahan sum_no_overflow geomean
geometric_mean weighted_avg wavg histogram histogram_exact list listagg bitstring_agg mean
json_group_array json_group_object json_group_structure
"""
_AGGREGATE_POSTGRES = """
jsonb_agg json_agg jsonb_object_agg json_object_agg xmlagg
"""
_AGGREGATE_SQLITE = """
json_group_array json_group_object
"""

# --- window -----------------------------------------------------------------------------------
_WINDOW = """
row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
nth_value rank_dense fill
"""

# --- table (FROM, LATERAL, a table position of any kind) ---------------------------------------
# ``range``/``generate_series`` are further bounded by the guard: literal arguments only, at
# most ``max_series_rows`` values (guard.py, docs/security.md).
_TABLE_COMMON = "unnest range generate_series json_each json_tree"
_TABLE_POSTGRES = "regexp_split_to_table jsonb_array_elements json_array_elements " \
    "jsonb_array_elements_text json_array_elements_text jsonb_each json_each_text " \
    "jsonb_each_text generate_subscripts"
_TABLE_DUCKDB = "generate_subscripts"
# Spark (and Databricks, Hive): LATERAL VIEW explode(...) is how it unnests an array
_TABLE_SPARK = "explode explode_outer posexplode posexplode_outer inline inline_outer"


def _names(*blocks: str) -> frozenset[str]:
    return frozenset(name for block in blocks for name in block.split())


SCALAR: dict[str, frozenset[str]] = {
    "common": _names(_SCALAR_COMMON),
    "duckdb": _names(_SCALAR_DUCKDB),
    "postgres": _names(_SCALAR_POSTGRES),
    "sqlite": _names(_SCALAR_SQLITE),
}
AGGREGATE: dict[str, frozenset[str]] = {
    "common": _names(_AGGREGATE_COMMON),
    "duckdb": _names(_AGGREGATE_DUCKDB),
    "postgres": _names(_AGGREGATE_POSTGRES),
    "sqlite": _names(_AGGREGATE_SQLITE),
}
WINDOW: dict[str, frozenset[str]] = {"common": _names(_WINDOW)}
TABLE: dict[str, frozenset[str]] = {
    "common": _names(_TABLE_COMMON),
    "duckdb": _names(_TABLE_DUCKDB),
    "postgres": _names(_TABLE_POSTGRES),
    "spark": _names(_TABLE_SPARK),
}
DIALECTS = ("duckdb", "postgres", "sqlite")
# Dialects that read with another's additions (sqlglot's names for them).
FAMILY = {"databricks": "spark", "hive": "spark", "spark2": "spark", "presto": "trino",
          "athena": "trino"}

# Typed sqlglot classes allowed by class: sqlglot's own names for functions it transpiles
# (``TimeToStr`` is DuckDB's strftime, SQLite's strftime, Postgres' to_char) and syntax it
# models as a function. Names, not classes, so a sqlglot release without one still imports.
TYPED = _names(
    """
    And Or Xor Not Case If Cast TryCast Coalesce Nullif Exists Extract Collate Columns
    Array Struct Map VarMap ToMap Bracket Unnest Explode Posexplode
    AnyValue ArgMax ArgMin ArrayAgg ArrayAll ArrayAny ArrayConcat ArrayContains
    ArrayContainsAll ArrayFilter ArrayOverlaps ArraySize ArraySort ArrayToString ArraySum
    ArrayFirst ArrayLast ArrayDistinct ArrayIntersect ArrayReverse ArraySlice ArrayPosition
    ArrayAppend ArrayPrepend ArrayRemove ArrayMax ArrayMin ArraysZip ArrayUniqueAgg
    ApproxDistinct ApproxQuantile CountIf GroupConcat LogicalAnd LogicalOr Quantile
    CombinedAggFunc
    CurrentDate CurrentTime CurrentTimestamp CurrentDatetime Localtime Localtimestamp
    Date DateAdd DateSub DateDiff DateTrunc DateFromParts DateStrToDate DateToDateStr
    DatetimeAdd DatetimeSub DatetimeDiff DatetimeTrunc DayOfMonth DayOfWeek DayOfWeekIso
    DayOfYear WeekOfYear YearOfWeek YearOfWeekIso LastDay MakeInterval MonthsBetween
    StrToDate StrToTime StrToUnix TimeAdd TimeSub TimeDiff TimeStrToDate TimeStrToTime
    TimeStrToUnix TimeToStr TimeToTimeStr TimeToUnix TimeTrunc TimestampAdd TimestampSub
    TimestampDiff TimestampTrunc TimestampFromParts TimeFromParts TsOrDiToDi TsOrDsAdd
    TsOrDsDiff TsOrDsToDate TsOrDsToDateStr TsOrDsToDatetime TsOrDsToTime
    TsOrDsToTimestamp UnixToStr UnixToTime UnixToTimeStr UnixDate UnixSeconds UnixMillis
    UnixMicros DiToDate DateToDi ToDays Datetime Time Timestamp Year Quarter Month Week Day
    Hour Minute Second Dayname Monthname
    StrPosition Pad Trim Substring SplitPart Split StringToArray Initcap Levenshtein
    RegexpLike RegexpILike RegexpExtract RegexpExtractAll RegexpReplace RegexpSplit
    RegexpCount RegexpFullMatch RegexpInstr RegexpSubstr ConcatWs Chr Unicode Length
    BitLength ByteLength Hex LowerHex Unhex ToBase64 FromBase64 SHA SHA2 MD5 MD5Digest
    JaroWinklerSimilarity JarowinklerSimilarity Stddev StddevPop StddevSamp Variance
    VariancePop CovarPop CovarSamp Corr Median Mode Kurtosis Skewness PercentileCont
    PercentileDisc Pow Ln Log Round Floor Ceil Sqrt Cbrt Exp Abs Sign SafeDivide IsNan
    IsInf
    JSONExtract JSONExtractScalar JSONBExtract JSONBExtractScalar JSONExtractArray JSONFormat
    JSONArray JSONObject JSONArrayAgg JSONObjectAgg JSONBObjectAgg JSONKeys JSONType
    JSONCast JSONExists JSONBContains JSONBExists ParseJSON CheckJson JSONStripNulls
    JSONArrayContains
    BitwiseAndAgg BitwiseOrAgg BitwiseXorAgg CosineDistance EuclideanDistance DateBin
    ExplodingGenerateSeries SHA2Digest Transform Overlay
    RowNumber Rank DenseRank PercentRank CumeDist Ntile Lag Lead FirstValue LastValue
    NthValue First Last
    GenerateSeries Typeof Uuid Rand Translate Reverse Repeat Replace Left Right Lower Upper
    Concat Greatest Least Sum Avg Count Min Max Grouping
    """
)

# Refused with a reason (the allow-list refuses them anyway; this only words the message).
DENIED: dict[str, str] = {
    **dict.fromkeys(
        _names("""read_csv read_csv_auto read_parquet parquet_scan parquet_metadata parquet_schema
        parquet_file_metadata parquet_kv_metadata parquet_bloom_probe parquet_full_metadata
        parquet_page_index read_json read_json_auto read_json_objects read_json_objects_auto
        read_ndjson read_ndjson_auto read_ndjson_objects read_text read_blob read_xlsx
        read_duckdb sniff_csv glob iceberg_scan iceberg_metadata iceberg_snapshots delta_scan
        sqlite_scan sqlite_attach postgres_scan postgres_scan_pushdown postgres_query
        postgres_execute postgres_attach mysql_query mysql_execute mysql_scan st_read
        st_readosm http_get http_post read_file pg_read_file pg_read_binary_file pg_ls_dir
        pg_stat_file lo_import lo_export dblink dblink_exec load_file copy_from writefile
        readfile read_ipc scan_arrow_ipc arrow_scan seq_scan load_extension install_extension
        """),
        "it reads files or reaches the network",
    ),
    # other dialects' readers, named so that the refusal says why (tests/security/
    # test_guard_dialects.py): ClickHouse table functions, BigQuery federated queries,
    # Snowflake stages and result caches, Spark's JVM calls and file readers
    # (file and secret are not listed: DuckDB reads them as keywords, and the allow-list
    # refuses them in the dialects that call them)
    **dict.fromkeys(
        _names("""url urlcluster s3 s3cluster gcs hdfs hdfscluster azureblobstorage
        azureblobstoragecluster remote remotesecure cluster clusterallreplicas mysql postgresql
        sqlite mongodb redis jdbc odbc executable input hudi deltalake iceberg
        external_query infer_schema get_presigned_url build_scoped_file_url
        build_stage_file_url get_stage_location get_relative_path result_scan
        reflect java_method try_reflect input_file_name input_file_block_start
        input_file_block_length read_files read_kafka read_kinesis read_pubsub"""),
        "it reads files or reaches the network",
    ),
    **dict.fromkeys(
        _names("""currentuser currentdatabase currentschemas currentprofiles currentroles
        hostname fqdn getsetting getmacro serveruuid uptime filesystemavailable
        filesystemcapacity current_account current_account_name current_region
        current_organization_name current_warehouse current_session current_statement
        last_query_id current_ip_address current_client current_available_roles
        current_secondary_roles current_catalog current_schema get_ddl
        session_user system_user"""),
        "it reveals server settings, paths or secrets",
    ),
    **dict.fromkeys(
        _names("""query query_table json_execute_serialized_sql json_serialize_sql
        json_deserialize_sql json_serialize_plan sql_auto_complete"""),
        "it runs or parses SQL held in a string",
    ),
    **dict.fromkeys(
        _names("""current_setting getenv getvariable version current_version current_database
        current_schema
        current_schemas current_catalog current_user current_role session_user user
        current_query current_query_id current_connection_id current_transaction_id
        txid_current in_search_path pg_backend_pid inet_server_addr inet_client_addr
        pg_postmaster_start_time pg_conf_load_time sqlite_version stats which_secret
        load_aws_credentials"""),
        "it reveals server settings, paths or secrets",
    ),
    **dict.fromkeys(
        _names("""nextval currval setval setseed lastval write_log error pg_sleep sleep sleep_ms
        truncate_duckdb_logs enable_logging disable_logging enable_profiling
        disable_profiling checkpoint force_checkpoint test_all_types test_vector_types
        repeat_row summary"""),
        "it changes state, sleeps or floods logs",
    ),
}
DENIED_PREFIXES: dict[str, str] = {
    "duckdb_": "DuckDB's meta functions reveal settings, paths and secrets",
    "pragma_": "PRAGMA functions reveal settings and paths",
    "read_": "it reads files",
    "pg_": "PostgreSQL's system functions reveal server state",
    "sqlite_": "SQLite's system functions reveal server state",
    "icu_": "not needed to answer questions",
    "system$": "Snowflake's system functions reveal and change account state",
}


def _keys(dialect: str) -> tuple[str, ...]:
    """The name lists ``dialect`` reads. A dialect the project does not target gets what the
    three targeted ones allow (each name is pure where it exists; what another dialect spells
    the same way but reads files or state with is in DENIED), plus its own additions."""
    if dialect in DIALECTS:
        return ("common", dialect)
    return ("common", *DIALECTS, FAMILY.get(dialect, dialect))


def allowed_names(dialect: str) -> frozenset[str]:
    """Every function name allowed in ``dialect`` (any kind)."""
    keys = _keys(dialect)
    names: set[str] = set()
    for kind in (SCALAR, AGGREGATE, WINDOW, TABLE):
        for key in keys:
            names |= kind.get(key, frozenset())
    return frozenset(names) - frozenset(DENIED)


def table_names(dialect: str) -> frozenset[str]:
    """The table functions allowed in ``dialect`` (in FROM, after LATERAL, in JOIN)."""
    return frozenset(n for key in _keys(dialect) for n in TABLE.get(key, frozenset()))


def denial_reason(name: str) -> str | None:
    """Why ``name`` is refused on purpose, or None when it is simply not on the list."""
    reason = DENIED.get(name)
    if reason is None:
        reason = next((r for p, r in DENIED_PREFIXES.items() if name.startswith(p)), None)
    return reason


def function_name(node: exp.Func) -> str:
    """The name a function node stands for, lower case: ``.name`` for sqlglot's anonymous
    calls, the first of sqlglot's SQL names for a typed class."""
    if isinstance(node, exp.Anonymous | exp.AnonymousAggFunc):
        return str(node.name).lower()
    return node.sql_name().lower()


def typed_allowed(cls: type[exp.Func], names: frozenset[str]) -> bool:
    """Whether the typed class ``cls`` is allowed: listed in TYPED, or one of its SQL names is
    in ``names`` and none is denied."""
    sql_names = {n.lower() for n in cls.sql_names()}
    if any(denial_reason(n) for n in sql_names):
        return False
    return cls.__name__ in TYPED or bool(sql_names & names)


_SERIES = frozenset({"range", "generate_series"})
# typed classes that are table functions (postgres' generate_series is ExplodingGenerateSeries)
_TYPED_TABLES = frozenset({exp.GenerateSeries, exp.ExplodingGenerateSeries, exp.Unnest})


class FunctionPolicy:
    """The allow-list for one dialect, with its decision per typed class and per name cached
    (one dict lookup per function node on the guard's hot path)."""

    def __init__(self, dialect: str, max_series_rows: int) -> None:
        self.names = allowed_names(dialect)
        self.tables = table_names(dialect)
        self.max_series_rows = max_series_rows
        self._typed: dict[type, str | None] = {}

    def refusal(self, node: exp.Func, *, table: bool = False) -> str | None:
        """Why ``node`` may not run (None: it may). ``table``: the call is in a table
        position (FROM, JOIN, LATERAL), where only table functions are allowed."""
        cls = type(node)
        if cls is exp.Anonymous or cls is exp.AnonymousAggFunc:
            name = str(node.name).lower()
            reason = None if name in self.names else _not_allowed(name)
        else:
            name = node.sql_name().lower()
            reason = self._typed.get(cls, "")
            if reason == "":
                names = self.names
                reason = None if typed_allowed(cls, names) else _not_allowed(name)
                self._typed[cls] = reason
        if reason is None and table and name not in self.tables and cls not in _TYPED_TABLES:
            reason = f"{name}() may not be read as a table (only table functions such as unnest)"
        if reason is None and (
            name in _SERIES or cls is exp.GenerateSeries or cls is exp.ExplodingGenerateSeries
        ):
            reason = self._series_refusal(node, "range()/generate_series()")
        return reason

    def _series_refusal(self, node: exp.Func, name: str) -> str | None:
        size = series_size(node)
        if size is None:
            return (f"{name} takes literal bounds (numbers, or dates with an INTERVAL "
                    f"step), so that its size is known: at most {self.max_series_rows:,} values")
        if size > self.max_series_rows:
            return (f"{name} would yield {size:,.0f} values "
                    f"(at most {self.max_series_rows:,})")
        return None


def _not_allowed(name: str) -> str:
    reason = denial_reason(name)
    if reason is not None:
        return f"function {name}() is not allowed: {reason}"
    return (f"function {name}() is not allowed (only known read-only functions are; "
            "see docs/security.md)")
