{# Fails for rows whose column lies outside [min_value, max_value] (or max exclusive). Nulls pass. #}
{% test value_in_range(model, column_name, min_value=none, max_value=none, max_inclusive=true) %}
select {{ column_name }} as out_of_range_value
from {{ model }}
where {{ column_name }} is not null
  and (
    false
    {% if min_value is not none %} or {{ column_name }} < {{ min_value }} {% endif %}
    {% if max_value is not none %}
        or {{ column_name }} {{ '>' if max_inclusive else '>=' }} {{ max_value }}
    {% endif %}
  )
{% endtest %}
