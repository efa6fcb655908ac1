#!/bin/bash
# check-profile-status.sh - CLI tool for profile status monitoring

API_BASE="${API_BASE:-http://localhost:8000}"

function check_profile_status() {
    local username="$1"
    local continuous="${2:-false}"

    if [ -z "$username" ]; then
        echo "‚ùå Error: Username required"
        echo "Usage: $0 <username> [continuous]"
        echo "Examples:"
        echo "  $0 entrepreneur_mike          # Single check"
        echo "  $0 entrepreneur_mike true     # Continuous monitoring"
        exit 1
    fi

    # Remove @ symbol if present
    username=$(echo "$username" | sed 's/^@//')

    echo "üîç Checking status for @$username"
    echo "==============================================="

    local check_count=0

    while true; do
        check_count=$((check_count + 1))

        if [ "$continuous" = "true" ]; then
            echo "üìä Status check #$check_count ($(date '+%H:%M:%S'))"
        fi

        # Make status request
        response=$(curl -s "$API_BASE/api/profile/$username/status")

        # Parse and display response
        if echo "$response" | jq -e '.success' > /dev/null; then
            completed=$(echo "$response" | jq -r '.data.completed')
            status=$(echo "$response" | jq -r '.data.status')
            message=$(echo "$response" | jq -r '.data.message')

            echo "Status: $status"
            echo "Message: $message"

            if [ "$completed" = "true" ]; then
                # Profile completed - show completion details
                followers=$(echo "$response" | jq -r '.data.followers_count // "unknown"')
                posts=$(echo "$response" | jq -r '.data.posts_count // "unknown"')
                age_hours=$(echo "$response" | jq -r '.data.profile_age_hours // "unknown"')
                freshness=$(echo "$response" | jq -r '.data.data_freshness // "unknown"')

                echo "‚úÖ Profile processing completed!"
                echo "   Followers: $followers"
                echo "   Posts: $posts"
                echo "   Age: ${age_hours}h ($freshness)"
                echo "   Profile URL: $(echo "$response" | jq -r '.data.profile_url // "N/A"')"
                echo "   Content URL: $(echo "$response" | jq -r '.data.content_url // "N/A"')"
                break

            elif [ "$status" = "FAILED" ]; then
                # Processing failed - show error details
                attempts=$(echo "$response" | jq -r '.data.attempts // "unknown"')
                error_msg=$(echo "$response" | jq -r '.data.error_message // "No error message"')
                retry_eligible=$(echo "$response" | jq -r '.data.is_retry_eligible // false')
                next_retry=$(echo "$response" | jq -r '.data.next_retry_time // null')

                echo "‚ùå Processing failed (attempt #$attempts)"
                echo "   Error: $error_msg"

                if [ "$retry_eligible" = "true" ] && [ "$next_retry" != "null" ]; then
                    echo "   Retry eligible at: $next_retry"
                    echo "   Recommend: Submit new processing request"
                else
                    echo "   No more retries available - manual intervention required"
                fi
                break

            elif [ "$status" = "NOT_FOUND" ]; then
                # Profile not found
                suggested_endpoint=$(echo "$response" | jq -r '.data.suggested_endpoint // "N/A"')
                echo "‚ùì Profile not found in system"
                echo "   Recommendation: Submit processing request first"
                echo "   Endpoint: $suggested_endpoint"
                break

            else
                # Still processing - show progress details
                processing_stage=$(echo "$response" | jq -r '.data.processing_stage // "unknown"')
                queue_position=$(echo "$response" | jq -r '.data.queue_position // "unknown"')
                estimated_time=$(echo "$response" | jq -r '.data.estimated_time_remaining // "unknown"')
                priority=$(echo "$response" | jq -r '.data.priority // "unknown"')
                processing_duration=$(echo "$response" | jq -r '.data.processing_duration_seconds // null')
                polling_interval=$(echo "$response" | jq -r '.data.recommended_polling_interval // "30 seconds"')

                echo "‚è≥ Processing in progress..."
                echo "   Stage: $processing_stage"
                echo "   Priority: $priority"

                if [ "$queue_position" != "null" ] && [ "$queue_position" != "unknown" ]; then
                    echo "   Queue position: #$queue_position"
                fi

                echo "   Estimated time: $estimated_time"

                if [ "$processing_duration" != "null" ]; then
                    echo "   Processing duration: ${processing_duration}s"
                fi

                if [ "$continuous" != "true" ]; then
                    echo ""
                    echo "üîî For continuous monitoring, run:"
                    echo "   $0 $username true"
                    break
                fi

                # Parse polling interval for sleep duration
                sleep_duration=$(echo "$polling_interval" | sed 's/[^0-9]//g')
                if [ -z "$sleep_duration" ]; then
                    sleep_duration=30
                fi

                echo "   Next check in ${sleep_duration}s..."
                echo ""
                sleep "$sleep_duration"
            fi

        else
            error_detail=$(echo "$response" | jq -r '.detail // "Unknown error"')
            echo "‚ùå API Error: $error_detail"

            if [ "$continuous" = "true" ]; then
                echo "   Retrying in 60 seconds..."
                sleep 60
            else
                exit 1
            fi
        fi

        # Safety limit for continuous mode
        if [ "$continuous" = "true" ] && [ $check_count -ge 100 ]; then
            echo "‚è∞ Reached maximum check limit (100) - stopping monitoring"
            break
        fi
    done
}

# Execute if called directly
if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
    check_profile_status "$@"
fi
