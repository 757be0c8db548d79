{{/* The release's base name for every object of the chart. */}}
{{- define "sbx.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the sbx pods (the DaemonSet's and the Service's). */}}
{{- define "sbx.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/* Labels of every object. */}}
{{- define "sbx.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret the chart writes its own secrets to. */}}
{{- define "sbx.secretName" -}}
{{- include "sbx.fullname" . }}
{{- end -}}

{{/* The Secret and key holding the admin API key. */}}
{{- define "sbx.apiKeySecret" -}}
{{- default (include "sbx.secretName" .) .Values.apiKey.existingSecret }}
{{- end -}}
{{- define "sbx.apiKeySecretKey" -}}
{{- if .Values.apiKey.existingSecret }}{{ .Values.apiKey.existingSecretKey }}{{ else }}api-key{{ end }}
{{- end -}}

{{/* Whether a Postgres DSN is configured (a value, a Secret or the quick-start Postgres). */}}
{{- define "sbx.storeEnabled" -}}
{{- if or .Values.store.dsn .Values.store.existingSecret .Values.quickstart.postgres.enabled }}true{{ end }}
{{- end -}}
{{- define "sbx.storeSecret" -}}
{{- default (include "sbx.secretName" .) .Values.store.existingSecret }}
{{- end -}}
{{- define "sbx.storeSecretKey" -}}
{{- if .Values.store.existingSecret }}{{ .Values.store.existingSecretKey }}{{ else }}store-dsn{{ end }}
{{- end -}}

{{/* The object store URL: the value, or the quick-start S3's bucket. */}}
{{- define "sbx.objectStoreURL" -}}
{{- if .Values.objectStore.url -}}
{{- .Values.objectStore.url -}}
{{- else if .Values.quickstart.s3.enabled -}}
{{- printf "s3://%s?endpoint=http://%s-s3:8333" .Values.quickstart.s3.bucket (include "sbx.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- define "sbx.objectStoreSecret" -}}
{{- default (include "sbx.secretName" .) .Values.objectStore.existingSecret }}
{{- end -}}
