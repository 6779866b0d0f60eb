{{/* Names and labels shared by every template. */}}

{{- define "uploadbucket.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "uploadbucket.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "uploadbucket.labels" -}}
{{ include "uploadbucket.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "uploadbucket.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "uploadbucket.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "uploadbucket.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "uploadbucket.sidecarImage" -}}
{{- printf "%s:%s" .Values.sidecar.image.repository (default .Chart.AppVersion .Values.sidecar.image.tag) -}}
{{- end -}}

{{- define "uploadbucket.certSecret" -}}
{{- if eq .Values.webhook.certificate.source "secret" -}}
{{- required "webhook.certificate.existingSecret is required when webhook.certificate.source is secret" .Values.webhook.certificate.existingSecret -}}
{{- else -}}
{{- printf "%s-webhook-tls" (include "uploadbucket.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- /* A Kubernetes quantity as a plain number of base units (bytes, cores), for comparing:
       the number times its suffix's multiplier. The schema has checked the form. */ -}}
{{- define "uploadbucket.quantity" -}}
{{- $q := toString . -}}
{{- $number := regexReplaceAll "[a-zA-Z]+$" $q "" -}}
{{- $suffix := trimPrefix $number $q -}}
{{- $scale := dict "" 1.0 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 -}}
{{- mulf (float64 $number) (index $scale $suffix) -}}
{{- end -}}

{{- /* The signer's resources, as the operator gets them: sidecar.resources, with the
       deprecated sidecar.memoryLimit in place of limits.memory when set. */ -}}
{{- define "uploadbucket.sidecarResources" -}}
{{- $r := .Values.sidecar.resources -}}
{{- $limits := dict "memory" (default $r.limits.memory .Values.sidecar.memoryLimit) -}}
{{- with $r.limits.cpu }}{{ $_ := set $limits "cpu" . }}{{ end -}}
{{- toYaml (dict "requests" $r.requests "limits" $limits) -}}
{{- end -}}

{{- /* Refuses what the operator would refuse at start (operator/src/cli.rs: the floors of
       --sidecar-memory-request and --sidecar-memory-limit, and limits under requests), so
       that a bad value fails the install rather than crash-looping the operator. */ -}}
{{- define "uploadbucket.checkSidecarResources" -}}
{{- $r := include "uploadbucket.sidecarResources" . | fromYaml -}}
{{- $q := dict -}}
{{- range $k := list "requests.cpu" "requests.memory" "limits.memory" "limits.cpu" -}}
{{- $v := index $r (splitList "." $k | first) (splitList "." $k | last) -}}
{{- if $v }}{{ $_ := set $q $k (include "uploadbucket.quantity" $v | float64) }}{{ end -}}
{{- end -}}
{{- $memLimit := ternary "sidecar.memoryLimit" "sidecar.resources.limits.memory" (not (empty .Values.sidecar.memoryLimit)) -}}
{{- if lt (index $q "requests.memory") (include "uploadbucket.quantity" "16Mi" | float64) -}}
{{- fail (printf "sidecar.resources.requests.memory %v is below 16Mi, the least the signer asks for: it idles at about 5 MiB of RSS, and each credentials load adds a helper process of about 11 MiB for a moment" $r.requests.memory) -}}
{{- end -}}
{{- if lt (index $q "limits.memory") (include "uploadbucket.quantity" "32Mi" | float64) -}}
{{- fail (printf "%v %v is below 32Mi, the least the signer runs in: under load with a credentials load's helper beside it the container uses about 20 MiB, and a signer killed for memory fails its pod's uploads" $memLimit $r.limits.memory) -}}
{{- end -}}
{{- if lt (index $q "limits.memory") (index $q "requests.memory") -}}
{{- fail (printf "%v %v is below sidecar.resources.requests.memory %v: the API server refuses a container whose limit is under its request" $memLimit $r.limits.memory $r.requests.memory) -}}
{{- end -}}
{{- if lt (index $q "requests.cpu") 0.001 -}}
{{- fail (printf "sidecar.resources.requests.cpu %v is below 1m" $r.requests.cpu) -}}
{{- end -}}
{{- if hasKey $q "limits.cpu" -}}
{{- if lt (index $q "limits.cpu") (index $q "requests.cpu") -}}
{{- fail (printf "sidecar.resources.limits.cpu %v is below sidecar.resources.requests.cpu %v: the API server refuses a container whose limit is under its request" $r.limits.cpu $r.requests.cpu) -}}
{{- end -}}
{{- end -}}
{{- end -}}
