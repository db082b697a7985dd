{{/* Names and labels. */}}
{{- define "mlops-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mlops-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mlops-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mlops-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mlops-operator.leaseName" -}}
{{- default (include "mlops-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "mlops-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* managed-by is Helm's: the operator's own label (managed-by: mlops-operator) marks the objects it makes. */}}
{{- define "mlops-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mlops-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: mlops
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The image of the operator, the model fetcher and the drift runner. */}}
{{- define "mlops-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The operator's permissions in a namespace it serves (a ClusterRole's rules cluster-wide, or a Role's per
namespace). Every verb is derived from the code; docs/rbac.md gives the reason for each, and
tests/unit/test_chart_render.py checks that table and these rules agree. No Secrets: the fetcher and the runner get
credentials through envFrom, which the kubelet resolves.
*/}}
{{- define "mlops-operator.rules" -}}
- apiGroups: [mlops.dev]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [mlops.dev]
  resources: [trainingjobs]
  verbs: [get, list, watch, create]
- apiGroups: [mlops.dev]
  resources: [driftmonitors]
  verbs: [get, list, watch]
- apiGroups: [mlops.dev]
  resources: [modeldeployments/status, trainingjobs/status]
  verbs: [patch]
- apiGroups: [mlops.dev]
  resources: [driftmonitors/status]
  verbs: [get, patch]
- apiGroups: [mlops.dev]
  resources: [modeldeployments/finalizers, trainingjobs/finalizers, driftmonitors/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, create, patch, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* The rule groups of the PrometheusRule (also a plain Prometheus rule file: tests run promtool on them). */}}
{{- define "mlops-operator.ruleGroups" -}}
{{- $job := printf "%s-metrics" (include "mlops-operator.fullname" .) -}}
{{- $r := .Values.prometheusRule -}}
groups:
  - name: mlops-operator.health
    rules:
      - alert: MlopsOperatorDown
        expr: absent(up{job="{{ $job }}", namespace="{{ .Release.Namespace }}"} == 1)
        for: {{ $r.operatorDownFor }}
        labels: {severity: critical}
        annotations:
          summary: The mlops-operator in {{ .Release.Namespace }} is down or not scraped
          description: No ModelDeployment, TrainingJob or DriftMonitor is reconciled while it is down.
      - alert: MlopsOperatorReconcileErrors
        expr: sum by (controller) (rate(controller_runtime_reconcile_errors_total{job="{{ $job }}"}[5m])) > 0
        for: {{ $r.reconcileErrorsFor }}
        labels: {severity: warning}
        annotations:
          summary: 'mlops-operator: {{ "{{" }} $labels.controller {{ "}}" }} reconciles keep failing'
          description: 'Errors at {{ "{{" }} $value | humanize {{ "}}" }}/s; see the operator log and the objects'' events.'
  - name: mlops-operator.drift
    rules:
      - alert: MlopsDriftDetected
        expr: max by (namespace, monitor) (mlops_drift_detected{job="{{ $job }}"}) == 1
        for: {{ $r.driftFor }}
        labels: {severity: {{ $r.driftSeverity }}}
        annotations:
          summary: 'Data drift: DriftMonitor {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.monitor {{ "}}" }}'
          description: 'The last drift check found dataset drift; kubectl describe dm -n {{ "{{" }} $labels.namespace {{ "}}" }} {{ "{{" }} $labels.monitor {{ "}}" }} names the features.'
      - alert: MlopsDriftChecksFailing
        expr: sum by (namespace, monitor) (increase(mlops_drift_checks_total{job="{{ $job }}", outcome="failed"}[1h])) > 0
        for: 0m
        labels: {severity: warning}
        annotations:
          summary: 'Drift checks of {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.monitor {{ "}}" }} fail'
          description: A failed check never raises a drift alarm, so drift can go unseen; the DriftMonitor's Ready condition says why.
{{- end -}}
